"""A local stand-in for Deepgram's speech-to-text: its wire protocol, not its models.

It serves what Slot's edge uses, as Deepgram documents it: `GET /v1/projects` (the edge's key
check at start-up), the Nova `/v1/listen` WebSocket (binary mu-law in; `Results` with
`is_final` / `speech_final` / `from_finalize` and timed words, `SpeechStarted`, `UtteranceEnd`,
`Metadata` out; `KeepAlive`, `Finalize`, `CloseStream` understood) and the Flux `/v2/listen`
WebSocket (`Connected`, then `TurnInfo` events StartOfTurn / Update / EagerEndOfTurn /
TurnResumed / EndOfTurn). Every request must carry `Authorization: Token <key>`, else 401.

Speech is found by frame energy; what was said comes from a `Recognizer` given the speech's
audio. By default that is the embedded Whisper run on the very audio received: the double then
transcribes whatever reaches it, so a call through it is only as good as the audio the edge
actually streamed (and words lost in a reconnect stay lost), without the double having to
know what the simulator meant to say. Tests pass their own recognizer when they need exact words;
`slot bench` runs it in a fast mode (`--known-lines`, `simulator.known_lines`) that recognizes the
simulator's registered clips by their frames, so the stand-in costs next to nothing.

Failures on demand: a key it refuses (401), a connection dropped (no close frame) after some
speech, connections beyond a number refused (503). Everything a client sent is recorded per
connection (`DoubleConnection`) for tests to check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from simulator.known_lines import KnownLines

RATE = 8000
FRAME = 160
"""20 ms of mu-law."""

Recognizer = Callable[[bytes], Awaitable[str]]
"""Text said in a stretch of 8 kHz mu-law audio."""


def mulaw_to_pcm(audio: bytes) -> np.ndarray[Any, np.dtype[np.int16]]:
    from media_edge.audio import mulaw_decode

    return mulaw_decode(audio)


def frame_voiced(frame: bytes, threshold: float) -> bool:
    pcm = mulaw_to_pcm(frame).astype(np.float64)
    return bool(pcm.size) and float(np.sqrt(np.mean(pcm * pcm))) >= threshold


def whisper_recognizer() -> Recognizer:
    """The embedded Whisper, on the audio the double received."""
    from concurrent.futures import ThreadPoolExecutor

    from media_edge.stt import WhisperSTT

    executor = ThreadPoolExecutor(1, thread_name_prefix="deepgram-double")
    whisper = WhisperSTT(executor)

    async def recognize(audio: bytes) -> str:
        return (await whisper.transcribe(mulaw_to_pcm(audio), RATE)).text

    return recognize


@dataclass
class DoubleConnection:
    """One WebSocket a client opened, and everything it sent."""

    path: str
    query: dict[str, str]
    authorization: str | None
    audio: bytearray = field(default_factory=bytearray)
    controls: list[str] = field(default_factory=list)
    """Types of the JSON messages received, in order (KeepAlive, Finalize, CloseStream)."""
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed_by: str | None = None


@dataclass
class _Speech:
    """Where the speech is in one connection's audio (sample offsets)."""

    threshold: float
    voiced_end: int | None = None
    """End of the last voiced frame."""
    speaking: bool = False
    pending_from: int = 0
    """Audio before this has been finalized (Nova) or belongs to a finished turn (Flux)."""
    last_report: int = 0
    utterance_open: bool = False
    voiced: list[tuple[int, int]] = field(default_factory=list)

    def push(self, frame: bytes, at: int) -> str | None:
        """'started' at speech onset, 'resumed' when it comes back after a pause."""
        if not frame_voiced(frame, self.threshold):
            if self.speaking:
                self.speaking = False
            return None
        change = None
        if not self.speaking:
            self.speaking = True
            change = "started" if not self.utterance_open else "resumed"
            self.utterance_open = True
            self.voiced.append((at, at + len(frame)))
        else:
            self.voiced[-1] = (self.voiced[-1][0], at + len(frame))
        self.voiced_end = at + len(frame)
        return change

    def silence(self, now: int) -> int:
        return 0 if self.speaking or self.voiced_end is None else now - self.voiced_end

    def voiced_span(self, start: int, end: int) -> tuple[int, int] | None:
        spans = [(max(a, start), min(b, end)) for a, b in self.voiced if b > start and a < end]
        return (spans[0][0], spans[-1][1]) if spans else None


class DeepgramDouble:
    def __init__(
        self,
        *,
        api_key: str,
        recognize: Recognizer | None = None,
        energy_threshold: float = 300.0,
        interim_every_s: float = 0.5,
        flux_update_every_s: float = 0.24,
        flux_eager_ms: int = 300,
        flux_eot_ms: int = 700,
    ) -> None:
        self.api_key = api_key
        self._recognize = recognize
        self.energy_threshold = energy_threshold
        self.interim_every = int(interim_every_s * RATE)
        self.flux_update_every = int(flux_update_every_s * RATE)
        self.flux_eager = flux_eager_ms * RATE // 1000
        self.flux_eot = flux_eot_ms * RATE // 1000
        self.connections: list[DoubleConnection] = []
        self.key_checks = 0
        self.drop_after_speech_ms: int | None = None
        """Drop the next connection (no close frame) once it has this much speech."""
        self.max_connections: int | None = None
        """WebSocket connections beyond this many are refused with 503."""
        self._server: Server | None = None
        self._changed = asyncio.Event()
        self.url = ""

    # ----- running -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving; returns the base URL (what SLOT_DEEPGRAM_URL should be)."""
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

    async def __aenter__(self) -> DeepgramDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, condition: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        """Until `condition()` holds (checked whenever a client sends something)."""
        async with asyncio.timeout(timeout_s):
            while not (value := condition()):
                changed = self._changed
                await changed.wait()
        return value

    def _touch(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def recognize(self, audio: bytes) -> str:
        if self._recognize is None:
            self._recognize = whisper_recognizer()
        return await self._recognize(audio)

    # ----- HTTP: key check and handshake -----------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if request.headers.get("Authorization") != f"Token {self.api_key}":
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid credentials\n")
        if path == "/v1/projects":
            self.key_checks += 1
            self._touch()
            return _json(HTTPStatus.OK, {"projects": []})
        if path not in ("/v1/listen", "/v2/listen"):
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        opened = len(self.connections)
        if self.max_connections is not None and opened >= self.max_connections:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        parts = urlsplit(request.path)
        record = DoubleConnection(
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            authorization=request.headers.get("Authorization"),
        )
        self.connections.append(record)
        self._touch()
        drop = self.drop_after_speech_ms
        self.drop_after_speech_ms = None
        session = (_Nova if parts.path == "/v1/listen" else _Flux)(self, ws, record, drop)
        try:
            await session.run()
        except ConnectionClosed:
            record.closed_by = record.closed_by or "client"
        finally:
            self._touch()


def _json(status: HTTPStatus, body: dict[str, Any]) -> Response:
    data = json.dumps(body).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return Response(status.value, status.phrase, headers, data)


class _Session:
    """One connection's audio, speech tracking and replies."""

    def __init__(
        self,
        double: DeepgramDouble,
        ws: ServerConnection,
        record: DoubleConnection,
        drop_after_speech_ms: int | None,
    ) -> None:
        self.double = double
        self.ws = ws
        self.record = record
        self.speech = _Speech(double.energy_threshold)
        self.request_id = str(uuid.uuid4())
        self._analysed = 0
        self._speech_samples = 0
        self._drop_after = (
            None if drop_after_speech_ms is None else drop_after_speech_ms * RATE // 1000
        )

    @property
    def received(self) -> int:
        return len(self.record.audio)

    async def send(self, message: dict[str, Any]) -> None:
        self.record.sent.append(message)
        await self.ws.send(json.dumps(message))

    async def run(self) -> None:
        await self.opened()
        async for message in self.ws:
            if isinstance(message, bytes):
                self.record.audio += message
                if not await self._analyse():
                    self.record.closed_by = "double (dropped)"
                    self.ws.transport.abort()
                    return
            else:
                kind = str(json.loads(message).get("type", ""))
                self.record.controls.append(kind)
                if await self.control(kind):
                    self.double._touch()
                    return
            self.double._touch()

    async def _analyse(self) -> bool:
        """Speech events for the new audio; False when the connection is to drop here (the
        rest of the audio lost, as in a real drop)."""
        audio = self.record.audio
        while self._analysed + FRAME <= len(audio):
            at = self._analysed
            frame = bytes(audio[at : at + FRAME])
            self._analysed += FRAME
            change = self.speech.push(frame, at)
            if self.speech.speaking:
                self._speech_samples += FRAME
            if self._drop_after is not None and self._speech_samples >= self._drop_after:
                del audio[self._analysed :]
                return False
            await self.frame(change, self._analysed)
        return True

    async def words(self, start: int, end: int) -> tuple[str, list[dict[str, Any]]]:
        """What was said in [start, end), words timed evenly over its voiced part (seconds)."""
        span = self.speech.voiced_span(start, end)
        if span is None:
            return "", []
        text = (await self.double.recognize(bytes(self.record.audio[start:end]))).strip()
        tokens = text.split()
        step = (span[1] - span[0]) / max(len(tokens), 1)
        words = [
            {
                "word": token.strip(".,?!").lower(),
                "punctuated_word": token,
                "start": round((span[0] + i * step) / RATE, 3),
                "end": round((span[0] + (i + 1) * step) / RATE, 3),
                "confidence": 0.99,
            }
            for i, token in enumerate(tokens)
        ]
        return text, words

    async def opened(self) -> None:
        return None

    async def frame(self, change: str | None, now: int) -> None:
        raise NotImplementedError

    async def control(self, kind: str) -> bool:
        """A JSON message from the client; True when the connection is to end."""
        raise NotImplementedError


class _Nova(_Session):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._interim: asyncio.Task[None] | None = None

    def _interim_results(self, now: int) -> None:
        """Interim words off the audio path, skipped while the last ones are still being
        recognized, so a slow recognizer never holds up the audio behind them."""
        if self._interim is None or self._interim.done():
            self.speech.last_report = now
            start = self.speech.pending_from
            self._interim = asyncio.create_task(self.results(start, now, interim=True))

    async def frame(self, change: str | None, now: int) -> None:
        speech = self.speech
        if change == "started":
            speech.last_report = now
            await self.send(
                {"type": "SpeechStarted", "channel": [0], "timestamp": round(now / RATE, 3)}
            )
        endpointing = int(self.record.query.get("endpointing", "300")) * RATE // 1000
        utterance_end = int(self.record.query.get("utterance_end_ms", "1000")) * RATE // 1000
        silence = speech.silence(now)
        if speech.voiced_end is not None and speech.voiced_end > speech.pending_from:
            if silence >= endpointing:
                await self.results(speech.pending_from, now, speech_final=True)
            elif speech.speaking and now - speech.last_report >= self.double.interim_every:
                self._interim_results(now)
        elif speech.utterance_open and silence >= utterance_end:
            speech.utterance_open = False
            await self.send(
                {
                    "type": "UtteranceEnd",
                    "channel": [0, 1],
                    "last_word_end": round((speech.voiced_end or 0) / RATE, 3),
                }
            )
        elif now - speech.pending_from >= 3 * RATE and not speech.speaking:
            await self.results(speech.pending_from, now)

    async def results(
        self,
        start: int,
        end: int,
        *,
        interim: bool = False,
        speech_final: bool = False,
        from_finalize: bool = False,
    ) -> None:
        if not interim:
            self.speech.pending_from = end
            if self._interim is not None:
                self._interim.cancel()
        text, words = await self.words(start, end)
        self.speech.last_report = end
        message: dict[str, Any] = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round((end - start) / RATE, 3),
            "start": round(start / RATE, 3),
            "is_final": not interim,
            "speech_final": speech_final,
            "channel": {"alternatives": [{"transcript": text, "confidence": 0.99, "words": words}]},
            "metadata": {
                "request_id": self.request_id,
                "model_info": {"name": "nova-3", "version": "double", "arch": "double"},
                "model_uuid": "00000000-0000-0000-0000-000000000000",
            },
        }
        if from_finalize:
            message["from_finalize"] = True
        await self.send(message)

    async def control(self, kind: str) -> bool:
        if kind == "Finalize":
            await self.results(self.speech.pending_from, self.received, from_finalize=True)
        elif kind == "CloseStream":
            if self.received > self.speech.pending_from:
                await self.results(self.speech.pending_from, self.received)
            await self.send(
                {
                    "type": "Metadata",
                    "transaction_key": "deprecated",
                    "request_id": self.request_id,
                    "sha256": "",
                    "created": "1970-01-01T00:00:00Z",
                    "duration": round(self.received / RATE, 3),
                    "channels": 1,
                }
            )
            self.record.closed_by = "client (CloseStream)"
            await self.ws.close()
            return True
        return False


class _Flux(_Session):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sequence = 0
        self.turn = 0
        self.in_turn = False
        self.eager_sent = False
        self.turn_start = 0

    async def opened(self) -> None:
        await self._send_flux({"type": "Connected", "request_id": self.request_id})

    async def _send_flux(self, message: dict[str, Any]) -> None:
        message["sequence_id"] = self.sequence
        self.sequence += 1
        await self.send(message)

    async def turn_info(self, event: str, now: int) -> None:
        text, words = await self.words(self.turn_start, now)
        message: dict[str, Any] = {
            "type": "TurnInfo",
            "request_id": self.request_id,
            "event": event,
            "turn_index": self.turn,
            "audio_window_start": round(self.turn_start / RATE, 3),
            "audio_window_end": round(now / RATE, 3),
            "transcript": text,
            "words": [
                {"word": w["punctuated_word"], "confidence": w["confidence"]}
                | {"start": w["start"], "end": w["end"]}
                for w in words
            ],
            "end_of_turn_confidence": 0.9 if event == "EndOfTurn" else 0.2,
        }
        if event == "EndOfTurn":
            message["trigger"] = "model"
        self.speech.last_report = now
        await self._send_flux(message)

    async def frame(self, change: str | None, now: int) -> None:
        speech = self.speech
        if change is not None and not self.in_turn:
            self.in_turn = True
            self.eager_sent = False
            self.turn_start = max(speech.pending_from, now - FRAME * 10)
            await self.turn_info("StartOfTurn", now)
            return
        if not self.in_turn:
            return
        if change == "resumed" and self.eager_sent:
            self.eager_sent = False
            await self.turn_info("TurnResumed", now)
        silence = speech.silence(now)
        if silence >= self.double.flux_eot:
            await self.turn_info("EndOfTurn", now)
            self.in_turn = False
            speech.pending_from = now
            speech.utterance_open = False
            self.turn += 1
        elif silence >= self.double.flux_eager and not self.eager_sent:
            self.eager_sent = True
            await self.turn_info("EagerEndOfTurn", now)
        elif now - speech.last_report >= self.double.flux_update_every:
            await self.turn_info("Update", now)

    async def control(self, kind: str) -> bool:
        if kind == "CloseStream":
            if self.in_turn:
                await self.turn_info("EndOfTurn", self.received)
            self.record.closed_by = "client (CloseStream)"
            await self.ws.close()
            return True
        return False


def main() -> None:
    """Serve the double until interrupted (the edge then runs with SLOT_DEEPGRAM_URL=...)."""
    parser = argparse.ArgumentParser(description="Local Deepgram wire-protocol double")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8095)
    parser.add_argument("--key", required=True, help="the DEEPGRAM_API_KEY it accepts")
    parser.add_argument(
        "--known-lines",
        type=Path,
        default=None,
        help="fast mode: recognize these registered caller clips (JSON) instead of running Whisper",
    )
    args = parser.parse_args()

    async def serve_forever() -> None:
        recognize = None
        if args.known_lines is not None:
            recognize = KnownLines.load(args.known_lines).recognize
        double = DeepgramDouble(api_key=args.key, recognize=recognize)
        print(f"Deepgram double at {await double.start(args.host, args.port)}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve_forever())


if __name__ == "__main__":
    main()
