"""Vector index backends behind one small protocol (``personalize.indexes``).

``FaissIndex`` (per-user shards, exact or IVF, GPU when present),
``ChromaIndex`` (embedded or a Chroma server) and ``PgVectorIndex``
(PostgreSQL + pgvector). Each imports its library lazily, so ``import
personalize`` works with any one extra installed. An index that keeps exact
copies of its vectors on the host also implements ``HoldsVectors``: retrieval
then takes candidates' embeddings from it instead of reading the store.
"""

from __future__ import annotations

from .base import HoldsVectors, VectorIndex
from .chroma_index import ChromaIndex
from .faiss_index import FaissIndex
from .pgvector_index import PgVectorIndex

__all__ = ["ChromaIndex", "FaissIndex", "HoldsVectors", "PgVectorIndex", "VectorIndex"]
