"""What the local text-to-speech doubles (`cartesia_double`, `aura_double`) share: the server,
the key check on the handshake, speech rendering, failure injection and the record of what
each client sent.

Speech is 8 kHz mu-law with word timings, rendered in one of two modes: `piper` (the embedded
Piper voice, words timed by their share of the audio) or `fast` (a tone burst per word, its
length from the word's, and a short gap: instant, exactly timed, a plausible duration; the
speech stand-in of `slot bench` and of tests that need exact timings).

Failures on demand: connections beyond a number refused (503), a key it refuses (401), a
connection dropped (no close frame) once it has sent some audio or halfway through the audio of
its Nth utterance, a first audio held back.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

RATE = 8000
RenderMode = Literal["piper", "fast"]

WORD_BASE_MS = 80
WORD_MS_PER_CHAR = 45
WORD_MAX_MS = 700
GAP_MS = 40


@dataclass(frozen=True)
class Rendered:
    """Speech for one text: mu-law audio and each word's (text, start s, end s)."""

    audio: bytes
    words: list[tuple[str, float, float]]

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE


def fast_render(text: str) -> Rendered:
    """A tone burst per word (its pitch from the word), then a short gap: exact timings."""
    from media_edge.audio import mulaw_encode

    audio = bytearray()
    words: list[tuple[str, float, float]] = []
    for word in text.split():
        ms = min(WORD_BASE_MS + WORD_MS_PER_CHAR * len(word), WORD_MAX_MS)
        t = np.arange(RATE * ms // 1000) / RATE
        pitch = 300.0 + zlib.crc32(word.lower().encode()) % 600
        burst = (5000 * np.sin(2 * np.pi * pitch * t)).astype(np.int16)
        start = len(audio) / RATE
        audio += mulaw_encode(burst)
        words.append((word, round(start, 3), round(len(audio) / RATE, 3)))
        audio += b"\xff" * (RATE * GAP_MS // 1000)
    return Rendered(bytes(audio), words)


@cache
def _piper() -> Any:
    from media_edge.tts import PiperTTS

    return PiperTTS(ThreadPoolExecutor(1, thread_name_prefix="tts-double"))


def piper_render(text: str) -> Rendered:
    """The embedded Piper voice; words timed by their share (in characters) of the audio."""
    from media_edge.audio import pcm_to_phone

    speech = _piper().synthesize_sentence(text)
    audio = pcm_to_phone(speech.audio, speech.sample_rate)
    tokens = text.split()
    total = sum(len(w) + 1 for w in tokens) or 1
    seconds = len(audio) / RATE
    words: list[tuple[str, float, float]] = []
    at = 0.0
    for token in tokens:
        span = seconds * (len(token) + 1) / total
        words.append((token, round(at, 3), round(at + span, 3)))
        at += span
    return Rendered(audio, words)


@dataclass
class TTSConnection:
    """One WebSocket a client opened, and everything it sent."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    received: list[dict[str, Any]] = field(default_factory=list)
    """The client's JSON messages, in order."""
    audio_sent: int = 0
    """Bytes of audio sent on this connection."""
    utterances: int = 0
    """Utterances (Cartesia contexts, Aura flushes) spoken on this connection so far."""
    closed_by: str | None = None
    drop_at: int | None = field(default=None, repr=False)
    """Drop the connection before sending audio past this many bytes."""
    drop_in_utterance: int | None = field(default=None, repr=False)


class TTSDouble:
    """A WebSocket server playing one TTS service; subclasses speak its messages."""

    path = "/"
    service = "tts"

    def __init__(self, *, api_key: str, mode: RenderMode = "fast", chunk_ms: int = 40) -> None:
        self.api_key = api_key
        self.mode: RenderMode = mode
        self.chunk_bytes = RATE * chunk_ms // 1000
        self.connections: list[TTSConnection] = []
        self.refused = 0
        self.max_connections: int | None = None
        """WebSocket connections beyond this many are refused with 503."""
        self.drop_after_audio_ms: int | None = None
        """Drop the next connection (no close frame) once it has sent this much audio."""
        self.drop_in_utterance: int | None = None
        """Drop the next connection halfway through the audio of its Nth utterance (1-based)."""
        self.first_audio_delay_s = 0.0
        """Hold back each utterance's first audio this long (a slow first byte)."""
        self.url = ""
        self._server: Server | None = None
        self._changed = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tts-double")

    # ----- running -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving; returns the base URL (what the edge's SLOT_..._URL should be)."""
        self._server = await serve(
            self._handle, host, port, process_request=self._process_request, max_size=2**20
        )
        bound = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Any:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, condition: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        """Until `condition()` holds (checked whenever a client does something)."""
        async with asyncio.timeout(timeout_s):
            while not (value := condition()):
                changed = self._changed
                await changed.wait()
        return value

    def touch(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def render(self, text: str) -> Rendered:
        if self.mode == "fast":
            return fast_render(text)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, piper_render, text)

    # ----- handshake -------------------------------------------------------------------------

    def authorized(self, request: Request) -> bool:
        raise NotImplementedError

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self.authorized(request):
            self.refused += 1
            self.touch()
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid credentials\n")
        if urlsplit(request.path).path != self.path:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            self.refused += 1
            self.touch()
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        parts = urlsplit(request.path)
        record = TTSConnection(
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers={k.lower(): v for k, v in request.headers.raw_items()},
        )
        self.connections.append(record)
        if self.drop_after_audio_ms is not None:
            record.drop_at = self.drop_after_audio_ms * RATE // 1000
        record.drop_in_utterance = self.drop_in_utterance
        self.drop_after_audio_ms = self.drop_in_utterance = None
        self.touch()
        try:
            await self.serve(ws, record)
        finally:
            record.closed_by = record.closed_by or "client"
            self.touch()

    async def serve(self, ws: ServerConnection, record: TTSConnection) -> None:
        raise NotImplementedError

    async def send_audio(
        self,
        ws: ServerConnection,
        record: TTSConnection,
        audio: bytes,
        send: Callable[[bytes], Any],
        *,
        first_of_utterance: bool,
    ) -> bool:
        """`audio` in chunks through `send`; False when the connection was dropped on the way
        (the rest never sent, as in a real drop)."""
        if first_of_utterance:
            record.utterances += 1
            if record.drop_in_utterance == record.utterances:
                record.drop_at = record.audio_sent + len(audio) // 2
        drop_at = record.drop_at
        for at in range(0, len(audio), self.chunk_bytes):
            piece = audio[at : at + self.chunk_bytes]
            if drop_at is not None and record.audio_sent + len(piece) > drop_at:
                record.closed_by = "double (dropped)"
                self.touch()
                ws.transport.abort()
                return False
            await send(piece)
            record.audio_sent += len(piece)
        self.touch()
        return True
