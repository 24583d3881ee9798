"""Text embedders: the ``Embedder`` protocol, its backends, and how one is chosen.

Every embedder returns L2-normalized float32 rows, so an inner product is a
cosine similarity everywhere downstream (FAISS ``IndexFlatIP``, Chroma cosine,
MMR, dedup).

An embedder carries two labels the store records: ``name``, the model identity
(``"all-MiniLM-L6-v2"``), and ``backend``, the numerics that ran it
(``"torch-fp32"``, ``"onnx-fp32"``, ``"torch-bf16"``...). Backends in
:data:`FP32_FAMILY` produce interchangeable vectors (min cosine >= 0.9999 to
torch fp32), so :func:`backends_compatible` lets a store built with one be
opened with another; any other backend change is refused.

Backends (see ``docs/embeddings.md``):

- ``"torch"``: sentence-transformers in fp32, the reference.
- ``"onnx"``: the same model exported once to ONNX and run by ONNX Runtime with
  a small fixed thread count: ~3x faster per query, immune to oversubscription.
- ``"bf16"``: torch in bfloat16, on CPUs with AVX512-BF16 or AMX only.
- ``"int8"``: the ONNX export dynamically quantized to int8 weights, run by ONNX
  Runtime on any x86-64 CPU; fastest on CPUs with VNNI. Its vectors are close
  to fp32 but not interchangeable with them.
- ``"auto"`` (default): ``"onnx"`` when it can run, else ``"torch"``; never a
  backend outside :data:`FP32_FAMILY`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ._embed_common import (
    BACKEND_BF16,
    BACKEND_ONNX,
    BACKEND_ONNX_INT8,
    BACKEND_TORCH,
    DEFAULT_MODEL_NAME,
    FP32_FAMILY,
    MIN_COSINE,
    PROBE_TEXTS,
    cache_root,
    normalize_rows,
)
from ._embed_onnx import OnnxEmbedder, onnx_available
from ._embed_torch import SentenceTransformerEmbedder, cpu_bf16_support
from .errors import ConfigError

__all__ = [
    "BACKEND_BF16",
    "BACKEND_ONNX",
    "BACKEND_ONNX_INT8",
    "BACKEND_TORCH",
    "DEFAULT_MODEL_NAME",
    "FP32_FAMILY",
    "MIN_COSINE",
    "PROBE_TEXTS",
    "Embedder",
    "LlamaIndexEmbedder",
    "OnnxEmbedder",
    "QueryCache",
    "SentenceTransformerEmbedder",
    "backend_of",
    "backends_compatible",
    "cpu_bf16_support",
    "default_embedder",
    "make_embedder",
    "normalize_rows",
]

logger = logging.getLogger(__name__)

#: ``make_embedder`` spellings -> the backend label they produce.
_CHOICES = {
    "onnx": BACKEND_ONNX,
    BACKEND_ONNX: BACKEND_ONNX,
    "torch": BACKEND_TORCH,
    BACKEND_TORCH: BACKEND_TORCH,
    "fp32": BACKEND_TORCH,
    "bf16": BACKEND_BF16,
    BACKEND_BF16: BACKEND_BF16,
    "int8": BACKEND_ONNX_INT8,
    BACKEND_ONNX_INT8: BACKEND_ONNX_INT8,
}
ENV_BACKEND = "PERSONALIZE_EMBED_BACKEND"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalized float32 vectors.

    Attributes:
        name: the model identity, recorded by the store so that vectors of two
            different models are never mixed.
        dim: the vector dimension.

    Embedders may also carry ``backend`` (the numerics: ``"torch-fp32"``,
    ``"onnx-fp32"``...), which the store records too; read it with
    :func:`backend_of`, which treats a missing one as a backend of its own.
    """

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into a ``(len(texts), dim)`` float32 array, rows of unit norm."""


def backend_of(embedder: Any) -> str:
    """The embedder's ``backend`` label; ``"custom:<class name>"`` when it has none."""
    backend = getattr(embedder, "backend", None)
    return str(backend) if backend else f"custom:{type(embedder).__name__}"


def backends_compatible(recorded: str, current: str) -> bool:
    """Whether vectors of backend ``current`` may join an index built with ``recorded``.

    True for the same backend, or for two backends of :data:`FP32_FAMILY`
    (their vectors agree to a cosine >= 0.9999, checked at construction).
    ``torch-bf16`` and ``onnx-int8`` only match themselves: their vectors differ
    from fp32 by more than fp32 backends differ from each other (int8: mean
    cosine about 0.99), so a query embedded by one numerics would be ranked
    against passages embedded by another.
    """
    return recorded == current or (recorded in FP32_FAMILY and current in FP32_FAMILY)


class QueryCache:
    """A small thread-safe LRU cache of query embeddings.

    One query is embedded several times per ``context()`` call (task detection,
    retrieval, persona matching); the cache makes the repeats free. It is keyed
    by a digest of the query, so users' queries are not held as text.
    """

    def __init__(self, embedder: Embedder, maxsize: int = 1024) -> None:
        self.embedder = embedder
        self._maxsize = maxsize
        self._items: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed_one(self, text: str) -> np.ndarray:
        """The embedding of ``text`` as a ``(dim,)`` float32 vector."""
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        vector = self.embedder.embed([text])[0]
        vector.setflags(write=False)
        with self._lock:
            self._items[key] = vector
            if len(self._items) > self._maxsize:
                self._items.popitem(last=False)
        return vector


class LlamaIndexEmbedder:
    """Adapts any LlamaIndex ``BaseEmbedding`` to the :class:`Embedder` protocol.

    Args:
        embed_model: a ``llama_index.core.base.embeddings.base.BaseEmbedding``.
        name: recorded model name (defaults to ``embed_model.model_name``).

    Attributes:
        backend: ``"llama-index:<class name>"``: a different adapter class is a
            different numerics, so the store will not mix them.
    """

    def __init__(self, embed_model: Any, *, name: str | None = None) -> None:
        self._embed_model = embed_model
        self.name = name or str(getattr(embed_model, "model_name", type(embed_model).__name__))
        self.backend = f"llama-index:{type(embed_model).__name__}"
        probe = np.asarray(embed_model.get_text_embedding("dimension probe"), dtype=np.float32)
        self.dim = int(probe.shape[-1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into a ``(len(texts), dim)`` float32 array, rows of unit norm."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._embed_model.get_text_embedding_batch(list(texts))
        return normalize_rows(np.asarray(vectors, dtype=np.float32))


def _onnx_runnable(cache_dir: str | Path | None) -> bool:
    """ONNX Runtime is importable and either ``onnx`` (to export) or some export is cached."""
    if onnx_available(for_export=True):
        return True
    if not onnx_available(for_export=False):
        return False
    # Without the onnx package only an existing export can be used; the exact
    # folder depends on the model's fingerprint, which OnnxEmbedder checks.
    onnx_root = cache_root(cache_dir) / "onnx"
    return onnx_root.is_dir() and any(onnx_root.glob("*/meta.json"))


def make_embedder(
    backend: str | None = None,
    model: str | Path | None = None,
    *,
    name: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    threads: int = 1,
    batch_threads: int | None = None,
    cache_dir: str | Path | None = None,
    min_cosine: float | None = None,
) -> Embedder:
    """Build an embedder for ``model`` on the chosen backend.

    Args:
        backend: ``"auto"``, ``"onnx"``, ``"torch"``, ``"bf16"`` or ``"int8"``
            (also the labels ``"onnx-fp32"``, ``"torch-fp32"``, ``"torch-bf16"``,
            ``"onnx-int8"``).
            ``None`` reads ``$PERSONALIZE_EMBED_BACKEND``, else ``"auto"``.
            ``"auto"`` picks ONNX when ``onnxruntime`` is installed (with
            ``onnx`` for the first export, or a cached export) and the device
            is the CPU, else torch fp32; it never picks bf16 or int8, whose
            vectors are not interchangeable with fp32 (the store would refuse a
            directory built with them when opened with fp32, e.g. on a machine
            without native bf16 or without the ``onnx`` package).
        model: a local sentence-transformers folder, or ``None`` for the
            bundled all-MiniLM-L6-v2.
        name: overrides the recorded model identity.
        device: torch device for the torch backends (``"cuda"`` makes ``"auto"``
            choose torch).
        batch_size: texts per forward pass (default 16 for ONNX, 64 for torch).
        threads: ONNX Runtime intra-op threads (1: fastest per query).
        batch_threads: ONNX Runtime threads for large batches (ingest).
        cache_dir: where the ONNX export (and its int8 copy) is cached (see
            :func:`cache_root`).
        min_cosine: overrides the backend's stated bound against fp32.

    Returns:
        An :class:`Embedder` with ``name``, ``backend`` and ``dim``.

    Raises:
        ConfigError: an unknown backend; a forced backend that cannot run here
            (bf16 on a CPU without native bf16) or whose probe vectors drift
            from fp32 beyond its bound.
        MissingDependencyError: a forced ``"onnx"`` or ``"int8"`` without
            ``onnxruntime`` (or without ``onnx`` when nothing is cached yet).
    """
    choice = (backend or os.environ.get(ENV_BACKEND) or "auto").strip().lower()
    if choice != "auto" and choice not in _CHOICES:
        raise ConfigError(
            f"unknown embedding backend {choice!r}; choose 'auto', 'onnx', 'torch', 'bf16' or 'int8'"
            + (f" (from ${ENV_BACKEND})" if backend is None else "")
        )
    torch_kwargs: dict[str, Any] = {"device": device, "name": name}
    if batch_size is not None:
        torch_kwargs["batch_size"] = batch_size
    onnx_kwargs: dict[str, Any] = {
        "name": name, "threads": threads, "batch_threads": batch_threads,
        "cache_dir": cache_dir, "min_cosine": min_cosine,
    }
    if batch_size is not None:
        onnx_kwargs["batch_size"] = batch_size
    resolved = _CHOICES.get(choice)
    if resolved == BACKEND_TORCH:
        return SentenceTransformerEmbedder(model, **torch_kwargs)
    if resolved == BACKEND_BF16:
        return SentenceTransformerEmbedder(model, precision="bf16", min_cosine=min_cosine, **torch_kwargs)
    if resolved == BACKEND_ONNX:
        return OnnxEmbedder(model, **onnx_kwargs)
    if resolved == BACKEND_ONNX_INT8:
        return OnnxEmbedder(model, precision="int8", **onnx_kwargs)
    # auto
    if (device is None or device == "cpu") and _onnx_runnable(cache_dir):
        try:
            return OnnxEmbedder(model, **onnx_kwargs)
        except Exception as exc:  # noqa: BLE001 - any export/runtime failure: fall back, loudly
            # ONNX is an optimization: a failed export or a drifting runtime must
            # not stop the application, but it must be visible.
            message = f"ONNX embedding backend unavailable ({exc}); falling back to torch fp32"
            logger.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
    return SentenceTransformerEmbedder(model, **torch_kwargs)


_default_lock = threading.Lock()
_default: Embedder | None = None


def default_embedder() -> Embedder:
    """The process-wide default embedder: bundled MiniLM on :func:`make_embedder`'s choice.

    Loaded once (loading takes from half a second with a cached ONNX export to
    a few seconds with torch); ``$PERSONALIZE_EMBED_BACKEND`` overrides the
    automatic choice.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = make_embedder()
            logger.info("default embedder: %s on %s", _default.name, backend_of(_default))
        return _default
