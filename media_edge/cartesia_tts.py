"""Cartesia Sonic text-to-speech over its WebSocket, through the official SDK (`cartesia`).

One `/tts/websocket` connection per call, opened when the call starts (`Cartesia-Version` and
`Authorization: Bearer` headers set by the SDK: the key is never in a URL or a log line). Each
utterance is one context: a whole line is one generation request (`continue: false`); an LLM's
phrases are continuations (`continue: true`, then an empty transcript with `continue: false`);
`max_buffer_delay_ms: 0`, since the edge's phrase chunker already hands over whole phrases and
Cartesia would otherwise hold text back up to 3 s waiting for more.
Audio is asked for as raw `pcm_mulaw` at 8 kHz, exactly what Twilio plays, with word
timestamps (`add_timestamps`) so the heard text after a barge-in is exact; a barge-in sends
`{context_id, cancel: true}`. Lifecycle, framing and the Piper fallback are
`media_edge.tts_stream`'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

from cartesia import AsyncCartesia
from cartesia.types.generation_request_param import GenerationRequestParam
from websockets.exceptions import InvalidStatus

from media_edge.providers import TimedWord
from media_edge.stt_stream import describe
from media_edge.tts import PhoneSpeech
from media_edge.tts_stream import (
    Audio,
    CallVoice,
    Done,
    Failed,
    LineCache,
    Utterance,
    VoiceConfigError,
    VoiceRejected,
    VoiceTimings,
    Words,
)
from slot.settings import Settings

KEY_VARIABLE = "CARTESIA_API_KEY"
REJECTED = (401, 403)

logger = logging.getLogger("media_edge.cartesia")


@dataclass(frozen=True)
class CartesiaConfig:
    settings: Settings
    api_key: str = field(repr=False)

    @classmethod
    def from_env(cls, settings: Settings) -> CartesiaConfig:
        key = os.environ.get(KEY_VARIABLE, "").strip()
        if not key:
            raise VoiceConfigError(f"SLOT_TTS=cartesia needs {KEY_VARIABLE} in the environment")
        return cls(settings, key)

    def client(self) -> AsyncCartesia:
        base = self.settings.cartesia_url.rstrip("/")
        sockets = "ws" + base.removeprefix("http")
        return AsyncCartesia(api_key=self.api_key, base_url=base, websocket_base_url=sockets)

    def timings(self) -> VoiceTimings:
        budget = self.settings.tts_first_audio_budget_ms / 1000
        return VoiceTimings(first_audio_s=budget, stall_s=max(2.0, 2 * budget))


def rejected(status: int) -> VoiceRejected:
    return VoiceRejected(f"{KEY_VARIABLE} was rejected by Cartesia (HTTP {status})")


@contextlib.asynccontextmanager
async def open_socket(client: AsyncCartesia) -> AsyncIterator[Any]:
    """The SDK's WebSocket connection; a refused key raises `VoiceRejected`."""
    manager = client.tts.websocket_connect()
    try:
        connection = await manager.enter()
    except InvalidStatus as error:
        if error.response.status_code in REJECTED:
            raise rejected(error.response.status_code) from None
        raise
    try:
        yield connection
    finally:
        with contextlib.suppress(Exception):
            await connection.close()


async def check_key(config: CartesiaConfig) -> None:
    """At start-up: a key Cartesia refuses stops the edge; an unreachable Cartesia does not
    (utterances fall back to Piper until it answers)."""
    try:
        async with open_socket(config.client()):
            pass
    except VoiceRejected as error:
        raise VoiceConfigError(str(error)) from None
    except Exception as error:
        logger.warning("Cartesia unreachable at start-up (%s); starting anyway", describe(error))


class CartesiaVoice(CallVoice):
    """One call's Cartesia connection."""

    provider = "cartesia"

    def __init__(
        self,
        config: CartesiaConfig,
        *,
        fallback: PhoneSpeech,
        lines: LineCache,
        log: logging.LoggerAdapter[logging.Logger],
        client: AsyncCartesia | None = None,
    ) -> None:
        super().__init__(fallback=fallback, lines=lines, log=log, timings=config.timings())
        self._settings = config.settings
        self._client = client or config.client()
        """The SDK client; an edge shares one between its calls (each opens its own socket)."""

    def connect(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return open_socket(self._client)

    async def messages(self, socket: Any) -> AsyncIterator[Any]:
        async for event in socket:
            yield event

    def handle(self, message: Any) -> None:
        kind = getattr(message, "type", None)
        context = getattr(message, "context_id", None)
        if kind == "chunk":
            self.deliver(context, Audio(message.audio or b""))
        elif kind == "timestamps" and message.word_timestamps is not None:
            stamps = message.word_timestamps
            words = tuple(
                TimedWord(word, start * 1000.0, end * 1000.0)
                for word, start, end in zip(stamps.words, stamps.start, stamps.end, strict=False)
            )
            self.deliver(context, Words(words))
        elif kind == "done":
            self.deliver(context, Done())
        elif kind == "error":
            reason = f"cartesia error: {message.title or message.error_code or 'unknown'}"
            self.log.warning("%s", reason)
            self.deliver(context, Failed(reason))

    def _request(self, utterance: Utterance, transcript: str, *, more: bool) -> Any:
        s = self._settings
        request: GenerationRequestParam = {
            "context_id": utterance.id,
            "model_id": s.cartesia_model,
            "transcript": transcript,
            "voice": cast(Any, {"mode": "id", "id": s.cartesia_voice}),
            "output_format": {
                "container": "raw",
                "encoding": "pcm_mulaw",
                "sample_rate": 8000,
            },
            "continue": more,
            "add_timestamps": True,
            "language": "en",
            "max_buffer_delay_ms": 0,
        }
        return request

    async def send_text(self, socket: Any, utterance: Utterance, text: str, *, last: bool) -> None:
        transcript = text if last else f"{text} "
        await socket.send(self._request(utterance, transcript, more=not last))

    async def send_end(self, socket: Any, utterance: Utterance) -> None:
        await socket.send(self._request(utterance, "", more=False))

    async def finish(self, socket: Any, utterance: Utterance, *, cancelled: bool) -> None:
        if cancelled:
            await socket.send({"context_id": utterance.id, "cancel": True})

    async def send_close(self, socket: Any) -> None:
        await socket.close()
