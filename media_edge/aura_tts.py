"""Deepgram Aura-2 text-to-speech over its WebSocket, through the official SDK (`deepgram-sdk`).

One `/v1/speak?model=aura-2-…&encoding=mulaw&sample_rate=8000` connection per call, opened when
the call starts (the key only in the `Authorization: Token` header the SDK sets). The socket
speaks one stream at a time, so utterances take turns on it: each phrase is a `Speak` and a
`Flush` (Aura then synthesizes it and answers `Flushed` after its audio, binary mu-law frames);
a barge-in sends `Clear` and the next utterance waits for `Cleared`, so no audio of the cut-off
one is played after it; `Close` at the end of the call. Aura gives no word timestamps, so the
heard text is a share of the words by played time. Lifecycle, framing and the Piper fallback are
`media_edge.tts_stream`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from deepgram.speak.v1.types import SpeakV1Text

from media_edge.audio import PHONE_RATE
from media_edge.stt_stream import describe
from media_edge.tts import PhoneSpeech
from media_edge.tts_stream import (
    Audio,
    CallVoice,
    Done,
    LineCache,
    PhraseDone,
    Utterance,
    VoiceConfigError,
    VoiceRejected,
    VoiceTimings,
)
from slot.settings import Settings

KEY_VARIABLE = "DEEPGRAM_API_KEY"
REJECTED = (401, 403)
CLEAR_TIMEOUT_S = 1.0
"""Longest wait for `Cleared` before the next utterance takes the socket anyway."""

logger = logging.getLogger("media_edge.aura")


@dataclass(frozen=True)
class AuraConfig:
    settings: Settings
    api_key: str = field(repr=False)

    @classmethod
    def from_env(cls, settings: Settings) -> AuraConfig:
        key = os.environ.get(KEY_VARIABLE, "").strip()
        if not key:
            raise VoiceConfigError(f"SLOT_TTS=aura needs {KEY_VARIABLE} in the environment")
        return cls(settings, key)

    def client(self) -> AsyncDeepgramClient:
        base = self.settings.aura_url.rstrip("/")
        sockets = "ws" + base.removeprefix("http")
        environment = DeepgramClientEnvironment(
            base=base, production=sockets, agent=sockets, agent_rest=base
        )
        return AsyncDeepgramClient(api_key=self.api_key, environment=environment)

    def timings(self) -> VoiceTimings:
        budget = self.settings.tts_first_audio_budget_ms / 1000
        return VoiceTimings(first_audio_s=budget, stall_s=max(2.0, 2 * budget))


@contextlib.asynccontextmanager
async def open_socket(
    config: AuraConfig, client: AsyncDeepgramClient | None = None
) -> AsyncIterator[Any]:
    """The SDK's speak WebSocket; a refused key raises `VoiceRejected`."""
    try:
        async with (client or config.client()).speak.v1.connect(
            model=config.settings.aura_model, encoding="mulaw", sample_rate=str(PHONE_RATE)
        ) as socket:
            yield socket
    except ApiError as error:
        if error.status_code in REJECTED:
            raise VoiceRejected(
                f"{KEY_VARIABLE} was rejected by Deepgram Aura (HTTP {error.status_code})"
            ) from None
        raise


async def check_key(config: AuraConfig) -> None:
    """At start-up: a key Deepgram refuses stops the edge; an unreachable Aura does not."""
    try:
        async with open_socket(config) as socket:
            await socket.send_close()
    except VoiceRejected as error:
        raise VoiceConfigError(str(error)) from None
    except Exception as error:
        logger.warning("Aura unreachable at start-up (%s); starting anyway", describe(error))


class AuraVoice(CallVoice):
    """One call's Aura connection; its utterances take turns on it."""

    provider = "aura"

    def __init__(
        self,
        config: AuraConfig,
        *,
        fallback: PhoneSpeech,
        lines: LineCache,
        log: logging.LoggerAdapter[logging.Logger],
        client: AsyncDeepgramClient | None = None,
    ) -> None:
        super().__init__(fallback=fallback, lines=lines, log=log, timings=config.timings())
        self._config = config
        self._client = client or config.client()
        """The SDK client; an edge shares one between its calls (each opens its own socket)."""
        self._turn = asyncio.Lock()
        self._current: str | None = None
        self._flushes = 0
        self._flushed = 0
        self._ending = False
        self._cleared = asyncio.Event()

    def connect(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return open_socket(self._config, self._client)

    async def messages(self, socket: Any) -> AsyncIterator[Any]:
        async for message in socket:
            yield message

    def handle(self, message: Any) -> None:
        """Audio to the utterance holding the socket; the control messages by their `type`
        (the SDK's parsing cannot tell `Flushed` from `Cleared`: they have the same fields)."""
        if isinstance(message, bytes):
            self.deliver(self._current, Audio(message))
            return
        kind = getattr(message, "type", None)
        if kind == "Flushed":
            self._flushed += 1
            self.deliver(self._current, PhraseDone())
            self._maybe_done()
        elif kind == "Cleared":
            self._cleared.set()
        elif kind == "Metadata":
            self.log.debug("aura model %s", getattr(message, "model_name", "?"))
        elif kind == "Warning":
            code, description = getattr(message, "code", ""), getattr(message, "description", "")
            self.log.warning("aura warning %s: %s", code, description)

    def _maybe_done(self) -> None:
        if self._ending and self._flushed >= self._flushes:
            self.deliver(self._current, Done())

    def _reset_connection(self) -> None:
        self._turn = asyncio.Lock()
        self._current = None
        self._cleared.set()

    async def begin(self, socket: Any, utterance: Utterance) -> None:
        await self._turn.acquire()
        self._current = utterance.id
        self._flushes = self._flushed = 0
        self._ending = False

    async def send_text(self, socket: Any, utterance: Utterance, text: str, *, last: bool) -> None:
        await socket.send_text(SpeakV1Text(type="Speak", text=text))
        await socket.send_flush()
        self._flushes += 1
        self._ending = last

    async def send_end(self, socket: Any, utterance: Utterance) -> None:
        self._ending = True
        self._maybe_done()

    async def finish(self, socket: Any, utterance: Utterance, *, cancelled: bool) -> None:
        lock = self._turn
        try:
            if cancelled and socket is self._socket:
                self._cleared.clear()
                self._current = None
                await socket.send_clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLEAR_TIMEOUT_S):
                        await self._cleared.wait()
        finally:
            if self._current == utterance.id:
                self._current = None
            if lock is self._turn and lock.locked():
                lock.release()

    async def send_close(self, socket: Any) -> None:
        await socket.send_close()
