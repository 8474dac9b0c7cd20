"""Small interfaces the edge's speech providers implement.

The embedded providers (Silero VAD, Whisper STT, Piper TTS with espeak-ng as fallback) are the
only ones today; the call session sees only these Protocols, so production providers (streaming
STT and TTS services) can plug in behind them later without touching the session.
All audio crossing these interfaces is mono 16-bit PCM as numpy int16 arrays, with the sample
rate stated where it can vary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

PCM = npt.NDArray[np.int16]


class VoiceActivityDetector(Protocol):
    """Per-call, stateful: speech probability of each window of 8 kHz audio."""

    window_samples: int

    def speech_probability(self, window: PCM) -> float: ...


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float | None = None
    provider: str = ""
    """Who transcribed it ("whisper", "deepgram", "flux")."""
    fallback: str | None = None
    """Why the call's streaming recognizer did not, when the embedded fallback did."""


@dataclass(frozen=True)
class SpeechContext:
    """What the caller is likely answering: recognition biased to the script's words.

    `prompt` is the agent's question (Whisper's initial prompt: the text said just before the
    audio), `hotwords` the words an answer here likely holds (slot values such as weekdays)."""

    prompt: str = ""
    hotwords: tuple[str, ...] = ()


class SpeechToText(Protocol):
    async def transcribe(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None = None
    ) -> Transcript:
        """Final transcript of one caller segment; runs off the event loop. A provider that
        cannot use `context` ignores it."""
        ...


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
