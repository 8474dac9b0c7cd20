"""Deepgram Flux (`/v2/listen`) as the call's recognizer and its end-of-turn source.

Flux reports each caller turn as `TurnInfo` events: `StartOfTurn`, `Update`s with the turn's
words so far, `EagerEndOfTurn` (probably finished) and `TurnResumed` (it was not), then
`EndOfTurn`. The turn's words feed the listener's script-aware endpointing at each pause like
Nova's do; `EndOfTurn` ends the turn (`StreamEndOfTurn`) in place of Smart Turn. Flux takes the
audio continuously (its turn model times the silence), so nothing is held back while the agent
talks. Lifecycle, reconnecting and the fallback are `media_edge.stt_stream`'s.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.listen.v2.types import (
    ListenV2Connected,
    ListenV2FatalError,
    ListenV2TurnInfo,
    ListenV2Warning,
)

from media_edge.audio import PHONE_RATE
from media_edge.deepgram_stt import REJECTED, DeepgramConfig, rejected
from media_edge.providers import SpeechToText
from media_edge.stt_stream import CallStream, StreamEndOfTurn, StreamSpeechStarted, StreamWords


def turn_words(info: ListenV2TurnInfo) -> list[tuple[str, float, float]]:
    """The turn's words with times; words Flux sent untimed share its audio window evenly."""
    words = info.words
    if all(w.start is not None and w.end is not None for w in words):
        return [(w.word, w.start or 0.0, w.end or 0.0) for w in words]
    span = (info.audio_window_end - info.audio_window_start) / max(len(words), 1)
    start = info.audio_window_start
    return [(w.word, start + i * span, start + (i + 1) * span) for i, w in enumerate(words)]


class FluxStream(CallStream):
    """One call's Flux stream."""

    provider = "flux"
    gated = False
    tolerance = PHONE_RATE * 3 // 10
    """Flux reports in steps of its audio window; a pause that asks is at least this long."""

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
        self._window_end = 0

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        s = self._config.settings
        try:
            async with self._client.listen.v2.connect(
                model=s.flux_model,
                encoding="mulaw",
                sample_rate=str(PHONE_RATE),
                eot_threshold=str(s.flux_eot_threshold),
                eot_timeout_ms=str(s.flux_eot_timeout_ms),
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
        if isinstance(message, ListenV2TurnInfo):
            self._turn_info(message)
        elif isinstance(message, ListenV2Connected):
            self.log.debug("flux stream connected")
        elif isinstance(message, ListenV2FatalError | ListenV2Warning):
            self.log.warning("flux %s: %s", message.type, getattr(message, "description", ""))

    def _turn_info(self, info: ListenV2TurnInfo) -> None:
        words = self.words_at(turn_words(info))
        self._window_end = max(self._window_end, self.offset(info.audio_window_end))
        text = " ".join(w.text for w in words)
        if info.event == "StartOfTurn":
            self.emit(StreamSpeechStarted(self.offset(info.audio_window_start)))
        if info.event == "EndOfTurn":
            self.words.add_final(words, self._window_end)
            self.ledger.finalized(self._window_end)
            self.emit(StreamWords(text, final=True, speech_final=True))
            self.emit(StreamEndOfTurn(info.transcript, info.end_of_turn_confidence))
        else:
            self.words.set_interim(words)
            self.emit(StreamWords(text, final=False))
        self._notify()

    def covered_through(self) -> int:
        return self._window_end

    def _text(self, start: int, end: int) -> str:
        return self.words.text(start, end, interim=True)

    def _reset_connection(self) -> None:
        self._window_end = self.ledger.base

    async def send_audio(self, socket: Any, audio: bytes) -> None:
        await socket.send_media(audio)

    async def send_close(self, socket: Any) -> None:
        await socket.send_close_stream()
