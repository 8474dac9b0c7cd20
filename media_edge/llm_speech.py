"""Speaking a tier-2 decision: the LLM's `say` text, phrase by phrase, into TTS as it is written.

The workflow hands the edge an `LLMTurnRequest` instead of a line. `LLMUtterance` starts the
LLM stream as soon as that decision arrives, cuts the streamed text into phrases
(`PhraseChunker`) and synthesizes each phrase while the LLM keeps writing and the previous phrase
plays (a streaming voice takes them as continuations of one utterance), so the first audio
frame leaves long before the reply is complete. `cancel()` is the barge-in hook: it aborts the
LLM stream. Whatever happens (no model on this edge, errors,
stalls, garbage), the words come from `TurnStream`, which ends in the safe line instead of
silence, and `result()` says what was generated for the workflow's Update `llm_result`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from media_edge.events import ms_between
from media_edge.llm import LanguageModel, TurnStream
from media_edge.phrases import PhraseChunker, phrases
from media_edge.tts import PhoneChunk, Voice
from workflows.router_messages import LLMTurnRequest, LLMTurnResult

_End = None


class LLMUtterance:
    """One LLM turn on its way to the caller; created inside the session's event loop."""

    def __init__(
        self,
        model: LanguageModel | None,
        request: LLMTurnRequest,
        speech: Voice,
    ) -> None:
        self.request = request
        self.speech = speech
        self.model_name = model.description if model is not None else "none"
        self.first_text_at: float | None = None
        self.first_audio_at: float | None = None
        self.cancelled = False
        self._turn: TurnStream | None = model.decide_turn(request) if model is not None else None
        self._cancelling: asyncio.Task[None] | None = None

    async def chunks(self) -> AsyncIterator[PhoneChunk]:
        """Phone audio of the reply, phrase by phrase; a producer task keeps synthesizing ahead
        of playback, so phrase i+1 is ready when phrase i has played."""
        queue: asyncio.Queue[PhoneChunk | BaseException | None] = asyncio.Queue()
        producer = asyncio.create_task(self._produce(queue))
        try:
            while (item := await queue.get()) is not _End:
                if isinstance(item, BaseException):
                    raise item
                assert item is not None
                yield item
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer

    async def _produce(self, queue: asyncio.Queue[PhoneChunk | BaseException | None]) -> None:
        try:
            async for chunk in self.speech.stream(phrases(self._deltas(), PhraseChunker())):
                if self.first_audio_at is None:
                    self.first_audio_at = time.monotonic()
                queue.put_nowait(chunk)
        except Exception as error:
            queue.put_nowait(error)
        finally:
            queue.put_nowait(_End)

    async def _deltas(self) -> AsyncIterator[str]:
        if self._turn is None:
            self.first_text_at = time.monotonic()
            yield self.request.fallback_line
            return
        async for delta in self._turn.say_deltas():
            if self.first_text_at is None:
                self.first_text_at = time.monotonic()
            yield delta

    def cancel(self) -> None:
        """Barge-in: abort the LLM stream (in the background; `result()` waits for it)."""
        if self._turn is None or self._cancelling is not None:
            return
        self.cancelled = True
        self._cancelling = asyncio.get_running_loop().create_task(self._turn.cancel())

    async def result(self) -> LLMTurnResult:
        """How the turn ended, with the edge's streaming stages added to its latency."""
        if self._turn is None:
            result = LLMTurnResult(
                next_state=self.request.state,
                say=self.request.fallback_line,
                used_fallback=True,
                reason="no LLM configured on this edge",
            )
        else:
            if self._cancelling is not None:
                await self._cancelling
            result = await self._turn.result()
        latency = {**result.latency_ms, **self._speech_latency()}
        return result.model_copy(update={"latency_ms": latency})

    def latency(self) -> dict[str, float]:
        """The LLM's `llm_first_token` (measured by the `TurnStream`, the one place it is
        computed) and this utterance's `first_audio_after_first_token`, in ms."""
        llm = self._turn.latency() if self._turn is not None else {}
        return {**llm, **self._speech_latency()}

    def _speech_latency(self) -> dict[str, float]:
        if self.first_text_at is None or self.first_audio_at is None:
            return {}
        stage = ms_between(self.first_audio_at, self.first_text_at)
        return {"first_audio_after_first_token": stage}
