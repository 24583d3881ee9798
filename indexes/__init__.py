"""Vector index backends behind one small protocol (``personalize.indexes``).

``FaissIndex`` (per-user shards, exact or IVF, GPU when present) and
``ChromaIndex`` (embedded or a Chroma server). Both import their library
lazily, so ``import personalize`` works with either extra installed.
"""

from __future__ import annotations

from .base import VectorIndex
from .chroma_index import ChromaIndex
from .faiss_index import FaissIndex

__all__ = ["ChromaIndex", "FaissIndex", "VectorIndex"]
