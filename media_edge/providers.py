"""Small interfaces the edge's speech providers implement.

The embedded providers (Silero VAD, Whisper or Moonshine STT, Piper TTS with espeak-ng as
fallback) sit behind these Protocols and are always loaded: they are the default and the
fallback of the streaming services. Those are one connection per call: speech-to-text from
Deepgram Nova-3 or Flux (`media_edge.stt_stream`, selected by SLOT_STT) and text-to-speech from
Cartesia Sonic or Deepgram Aura-2 (`media_edge.tts_stream`, selected by SLOT_TTS), which speak
8 kHz mu-law and report word timings (`SpokenText`) where the service gives them.
Audio crossing the embedded interfaces is mono 16-bit PCM as numpy int16 arrays, with the
sample rate stated where it can vary.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

PCM = npt.NDArray[np.int16]


class VoiceActivityDetector(Protocol):
    """Per-call, stateful: speech probability of each window of 8 kHz audio."""

    window_samples: int

    def speech_probability(self, window: PCM) -> float: ...

    def reset(self) -> None:
        """Forget the stream so far (its recurrent state)."""


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float | None = None
    provider: str = ""
    """Who transcribed it ("whisper", "deepgram", "flux")."""
    fallback: str | None = None
    """Why the call's streaming recognizer did not, when the embedded fallback did."""
    first_reading: str | None = None
    """The model's likeliest reading, when the script understood a less likely one instead
    (`SpeechContext.readings`)."""


@dataclass(frozen=True)
class SpeechContext:
    """What the caller is likely answering: recognition biased to the script's words.

    `prompt` is the agent's question (Whisper's initial prompt: the text said just before the
    audio), `hotwords` the words an answer here likely holds (slot values such as weekdays)."""

    prompt: str = ""
    hotwords: tuple[str, ...] = ()
    readings: ReadingJudge | None = field(default=None, compare=False)
    """The script's view of a reading: a model that can list its next likeliest readings
    (Moonshine) offers one that answers the question when its first is not settled."""


class ReadingJudge(Protocol):
    """How the script takes a reading of the caller's audio (`workflows.expectations`)."""

    def settled(self, text: str) -> bool:
        """A first reading to keep as it is: understood, or trailing off (the caller may go on)."""
        ...

    def answers(self, text: str) -> bool:
        """A reading that answers the question in the state's own terms."""
        ...

    def asks_a_day_or_time(self) -> bool:
        """The question collects a weekday or a time of day, which the agent reads back before
        anything is booked: another model's reading may be taken for one not settled."""
        ...

    def gives_the_day_or_time(self, text: str) -> bool:
        """A reading that gives the weekday or time of day the question collects."""
        ...


class SpeechToText(Protocol):
    async def transcribe(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None = None
    ) -> Transcript:
        """Final transcript of one caller segment; runs off the event loop. A provider that
        cannot use `context` ignores it."""
        ...


class TranscribesOnExecutor(ABC):
    """`transcribe` for an embedded model: its blocking `transcribe_sync` run on the model's
    executor, off the event loop."""

    _executor: Executor

    @abstractmethod
    def transcribe_sync(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None = None
    ) -> Transcript:
        """The transcript of one segment, on the calling thread (evaluations, warm-up)."""

    async def transcribe(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None = None
    ) -> Transcript:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.transcribe_sync, audio, sample_rate, context
        )


@dataclass(frozen=True)
class SpeechChunk:
    """A piece of synthesized speech and the text it says (for heard-text from marks)."""

    audio: PCM
    sample_rate: int
    text: str


class TextToSpeech(Protocol):
    def synthesize(self, phrases: Sequence[str]) -> AsyncIterator[SpeechChunk]:
        """Speech for each phrase (already cut by `media_edge.phrases`), in order, the first
        chunk as early as possible."""
        ...


@dataclass(frozen=True)
class TimedWord:
    """A word of synthesized speech, timed in ms from the start of its stream's audio."""

    text: str
    start_ms: float
    end_ms: float


@dataclass
class SpokenText:
    """What one stream of synthesized speech says, and when each word is said, filled in as
    the service reports it (Cartesia's word timestamps; Aura and Piper give none)."""

    text: str = ""
    words: list[TimedWord] = field(default_factory=list)

    def heard(self, elapsed_ms: float, duration_ms: float) -> str:
        """The words heard after `elapsed_ms` of this stream: those whose end has played, by
        the service's timestamps; without them, a share of the words by played time."""
        if self.words:
            return " ".join(w.text for w in self.words if w.end_ms <= elapsed_ms)
        words = self.text.split()
        fraction = elapsed_ms / duration_ms if duration_ms else 0.0
        return " ".join(words[: int(len(words) * max(0.0, fraction))])
