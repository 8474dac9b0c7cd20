"""Deepgram Nova-3 streaming speech-to-text, through the official SDK (`deepgram-sdk`).

One `/v1/listen` WebSocket per call, opened when the call starts: Twilio's mu-law 8 kHz is sent
as is, with interim results, Deepgram's VAD events, its endpointing (`speech_final`) and
`UtteranceEnd`. At a pause the edge sends `Finalize` and takes the final words that come back;
`KeepAlive` keeps the stream open while the agent talks and no caller audio is sent;
`CloseStream` ends it. The key goes only in the `Authorization: Token` header the SDK sets,
never in a URL or a log line. The connection's lifecycle, reconnecting and the Whisper fallback
are `media_edge.stt_stream`'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from deepgram.listen.v1.types import (
    ListenV1Error,
    ListenV1Metadata,
    ListenV1Results,
    ListenV1SpeechStarted,
    ListenV1UtteranceEnd,
)

from media_edge.audio import PHONE_RATE
from media_edge.providers import SpeechToText
from media_edge.stt_stream import (
    CallStream,
    StreamRejected,
    StreamSpeechStarted,
    StreamTimings,
    StreamUtteranceEnd,
    StreamWords,
    describe,
)
from slot.settings import Settings

KEY_VARIABLE = "DEEPGRAM_API_KEY"
REJECTED = (401, 403)

logger = logging.getLogger("media_edge.deepgram")


class DeepgramConfigError(Exception):
    """Deepgram cannot be used as configured; the message is one line naming what to fix."""


@dataclass(frozen=True)
class DeepgramConfig:
    settings: Settings
    api_key: str = field(repr=False)

    @classmethod
    def from_env(cls, settings: Settings) -> DeepgramConfig:
        key = os.environ.get(KEY_VARIABLE, "").strip()
        if not key:
            raise DeepgramConfigError(
                f"SLOT_STT={settings.stt} needs {KEY_VARIABLE} in the environment"
            )
        return cls(settings, key)

    def client(self) -> AsyncDeepgramClient:
        base = self.settings.deepgram_url.rstrip("/")
        sockets = "ws" + base.removeprefix("http")
        environment = DeepgramClientEnvironment(
            base=base, production=sockets, agent=sockets, agent_rest=base
        )
        return AsyncDeepgramClient(api_key=self.api_key, environment=environment)

    def timings(self) -> StreamTimings:
        s = self.settings
        return StreamTimings(
            keepalive_s=s.deepgram_keepalive_s,
            final_timeout_s=s.deepgram_final_timeout_ms / 1000,
            words_timeout_s=s.deepgram_words_timeout_ms / 1000,
            keep_s=s.deepgram_resend_s,
        )


async def check_key(config: DeepgramConfig) -> None:
    """At start-up: a key Deepgram refuses stops the edge; an unreachable Deepgram does not
    (calls fall back to Whisper until it answers)."""
    try:
        await config.client().manage.v1.projects.list()
    except ApiError as error:
        if error.status_code in REJECTED:
            raise DeepgramConfigError(
                f"{KEY_VARIABLE} was rejected by Deepgram (HTTP {error.status_code})"
            ) from None
        logger.warning("Deepgram key check failed (%s); starting anyway", describe(error))
    except Exception as error:
        logger.warning("Deepgram unreachable at start-up (%s); starting anyway", describe(error))


def rejected(error: ApiError) -> StreamRejected:
    return StreamRejected(f"{KEY_VARIABLE} was rejected by Deepgram (HTTP {error.status_code})")


class NovaStream(CallStream):
    """One call's Nova-3 stream."""

    provider = "deepgram"

    def __init__(
        self,
        config: DeepgramConfig,
        *,
        fallback: SpeechToText,
        log: logging.LoggerAdapter[logging.Logger],
        client: AsyncDeepgramClient | None = None,
    ) -> None:
        super().__init__(fallback=fallback, log=log, timings=config.timings())
        self._config = config
        self._client = client or config.client()
        """The SDK client; an edge shares one between its calls (each opens its own socket):
        making one builds an SSL context, 50-250 ms of the event loop per call."""
        self._finalize_wanted = False
        self._finalize_marks: deque[int] = deque()
        """Audio each Finalize sent on this connection covers, oldest first."""

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        s = self._config.settings
        try:
            async with self._client.listen.v1.connect(
                model=s.deepgram_model,
                encoding="mulaw",
                sample_rate=str(PHONE_RATE),
                interim_results="true",
                vad_events="true",
                punctuate="true",
                endpointing=str(s.deepgram_endpointing_ms),
                utterance_end_ms=str(s.deepgram_utterance_end_ms),
            ) as socket:
                yield socket
        except ApiError as error:
            if error.status_code in REJECTED:
                raise rejected(error) from None
            raise

    async def messages(self, socket: Any) -> AsyncIterator[Any]:
        async for message in socket:
            yield message

    def handle(self, message: Any) -> None:
        if isinstance(message, ListenV1Results):
            self._results(message)
        elif isinstance(message, ListenV1SpeechStarted):
            self.emit(StreamSpeechStarted(self.offset(message.timestamp)))
        elif isinstance(message, ListenV1UtteranceEnd):
            self.emit(StreamUtteranceEnd(self.offset(message.last_word_end)))
        elif isinstance(message, ListenV1Metadata):
            self.log.debug("deepgram stream metadata received")
        elif isinstance(message, ListenV1Error):
            self.log.warning("deepgram error message: %s", getattr(message, "description", ""))

    def _results(self, message: ListenV1Results) -> None:
        alternatives = message.channel.alternatives
        items = alternatives[0].words if alternatives else []
        words = self.words_at([(w.punctuated_word or w.word, w.start, w.end) for w in items])
        text = " ".join(w.text for w in words)
        if message.is_final:
            through = self.offset(message.start + message.duration)
            if message.from_finalize and self._finalize_marks:
                through = max(through, self._finalize_marks.popleft())
            self.words.add_final(words, through)
            self.ledger.finalized(through)
            self.emit(StreamWords(text, final=True, speech_final=bool(message.speech_final)))
        else:
            self.words.set_interim(words)
            self.emit(StreamWords(text, final=False))
        self._notify()

    def covered_through(self) -> int:
        return self.words.finalized_through

    def _want_final(self) -> None:
        self._finalize_wanted = True
        self._wake.set()

    def _reset_connection(self) -> None:
        self._finalize_wanted = False
        self._finalize_marks.clear()

    async def send_audio(self, socket: Any, audio: bytes) -> None:
        await socket.send_media(audio)

    async def send_keepalive(self, socket: Any) -> None:
        await socket.send_keep_alive()

    async def send_requests(self, socket: Any) -> None:
        if not self._finalize_wanted:
            return
        self._finalize_wanted = False
        if self._finalize_marks and self._finalize_marks[-1] >= self.ledger.sent:
            return
        self._finalize_marks.append(self.ledger.sent)
        await socket.send_finalize()

    async def send_close(self, socket: Any) -> None:
        await socket.send_close_stream()
