"""A fast, deterministic embedder for tests that exercise storage, not semantics."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from personalize.embeddings import normalize_rows

__all__ = ["HashingEmbedder"]

_TOKEN = re.compile(r"\w+")


class HashingEmbedder:
    """Feature-hashing bag of words: identical texts get identical vectors, texts
    sharing words get similar ones. Loads in microseconds, so crash-loop and
    soak tests can start hundreds of processes; use the real model
    (``personalize.default_embedder()``) wherever retrieval quality matters.

    Args:
        dim: vector dimension.
        name: recorded embedder name (a data directory refuses another embedder).
    """

    def __init__(self, dim: int = 64, *, name: str = "hashing-test-embedder") -> None:
        self.dim = dim
        self.name = name

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self.dim] += 1.0 if (value >> 32) & 1 else -1.0
            if not out[row].any():
                out[row, 0] = 1.0
        return normalize_rows(out)
