"""Smart Turn v3.2: does the caller sound finished? An ONNX model run at each pause.

The model and its numpy feature code ship inside the `pipecat-ai` wheel, installed without its
dependencies; pipecat's package `__init__` imports libraries we do not install, so both files are
located through the distribution's metadata and the feature module is loaded by file path.

The input is prepared exactly as pipecat's `LocalSmartTurnAnalyzerV3` does: the turn's audio (from
just before speech started to now) as float32 in [-1, 1], resampled to 16 kHz, the last 8 s kept,
zero-padded at the front up to 8 s, then Whisper log-mel features with waveform normalisation,
shape (1, 80, 800), input `input_features`; the output is the probability the turn is complete.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from functools import cache, lru_cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]

from media_edge.audio import PHONE_RATE, resample
from media_edge.providers import PCM

MODEL_RATE = 16_000
WINDOW_S = 8
WINDOW_SAMPLES = MODEL_RATE * WINDOW_S
_MODEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
_FEATURES_FILE = "pipecat/audio/turn/smart_turn/_whisper_features.py"

Features = Callable[..., npt.NDArray[np.float32]]


def _pipecat_file(relative: str) -> Path:
    try:
        dist = distribution("pipecat-ai")
    except PackageNotFoundError as exc:
        raise RuntimeError(
            "Smart Turn needs the pipecat-ai wheel (installed without its dependencies)"
        ) from exc
    path = Path(str(dist.locate_file(relative)))
    if not path.is_file():
        raise RuntimeError(f"pipecat-ai is installed but {relative} is missing from it")
    return path


def model_path() -> Path:
    """Where the bundled `smart-turn-v3.2-cpu.onnx` is."""
    return _pipecat_file(_MODEL_FILE)


@lru_cache(maxsize=1)
def _whisper_features() -> Features:
    """pipecat's numpy-only Whisper log-mel code, loaded without importing `pipecat`."""
    path = _pipecat_file(_FEATURES_FILE)
    spec = importlib.util.spec_from_file_location("slot_smart_turn_whisper_features", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load Smart Turn features from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    features: Features = module.compute_whisper_log_mel_features
    return features


def prepare_input(audio: PCM, sample_rate: int = PHONE_RATE) -> npt.NDArray[np.float32]:
    """The model's `input_features` (1, 80, 800) for the turn's audio so far."""
    pcm16k = resample(audio, sample_rate, MODEL_RATE) if sample_rate != MODEL_RATE else audio
    samples = pcm16k.astype(np.float32) / 32768.0
    if len(samples) > WINDOW_SAMPLES:
        samples = samples[-WINDOW_SAMPLES:]
    elif len(samples) < WINDOW_SAMPLES:
        samples = np.pad(samples, (WINDOW_SAMPLES - len(samples), 0))
    log_mel = _whisper_features()(samples, do_normalize=True)
    return np.expand_dims(log_mel, axis=0).astype(np.float32)


class SmartTurnModel:
    """One ONNX session per process (see `shared`); `predict` is thread-safe and blocking."""

    def __init__(self, path: Path | None = None, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path or model_path()
        self._session: Any = ort.InferenceSession(
            str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_name: str = self._session.get_inputs()[0].name

    @staticmethod
    @cache
    def shared() -> SmartTurnModel:
        """The process-wide model, loaded on first use (about 0.3 s)."""
        return SmartTurnModel()

    def predict(self, audio: PCM, sample_rate: int = PHONE_RATE) -> float:
        """Probability that the caller has finished, from the turn's audio up to the pause.

        `audio` is 16-bit PCM (8 kHz phone audio by default) starting just before the caller
        started speaking and ending now; only its last 8 s are used.
        """
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"Smart Turn needs non-empty mono PCM, got shape {audio.shape}")
        outputs = self._session.run(None, {self._input_name: prepare_input(audio, sample_rate)})
        return float(np.asarray(outputs[0]).reshape(-1)[0])


class TurnDetector:
    """Async front of the model for the edge: inference in the shared executor, once per pause.

    One detector may serve one call or many (make `pause_id` unique across the calls it serves,
    e.g. `(call_id, n)`). Asking twice for the same pause, even while the first inference is
    still running, returns the same verdict from one inference.
    """

    def __init__(
        self,
        model: SmartTurnModel,
        executor: Executor | None = None,
        *,
        remember: int = 256,
    ) -> None:
        self.model = model
        self.executor = executor
        self.inferences = 0
        """How many times the model actually ran (for tests and metrics)."""
        self._remember = remember
        self._verdicts: OrderedDict[Hashable, asyncio.Future[float]] = OrderedDict()

    async def probability(
        self, pause_id: Hashable, audio: PCM, sample_rate: int = PHONE_RATE
    ) -> float:
        """P(turn complete) at the pause `pause_id`, computed at most once per pause."""
        future = self._verdicts.get(pause_id)
        if future is None:
            loop = asyncio.get_running_loop()
            self.inferences += 1
            future = asyncio.ensure_future(
                loop.run_in_executor(self.executor, self.model.predict, audio.copy(), sample_rate)
            )
            self._verdicts[pause_id] = future
            while len(self._verdicts) > self._remember:
                self._verdicts.popitem(last=False)
        return await asyncio.shield(future)

    def known(self, pause_id: Hashable) -> float | None:
        """The verdict for `pause_id` if its inference has finished, without waiting."""
        future = self._verdicts.get(pause_id)
        if future is None or not future.done() or future.cancelled():
            return None
        if future.exception() is not None:
            return None
        return future.result()
