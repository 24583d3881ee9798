"""The ``VectorIndex`` protocol every vector backend implements.

A vector index is *derived* data: SQLite holds every chunk's text and
embedding, and the index can always be rebuilt from it. Backends therefore only
need to be fast and isolated, and to remember which data version of a user
they last synchronized (so the store knows when to reconcile them).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["EMPTY_IDS", "HoldsVectors", "VectorIndex", "as_id_array", "as_query_matrix"]

EMPTY_IDS = np.zeros(0, dtype=np.int64)


@runtime_checkable
class VectorIndex(Protocol):
    """Per-user vector search with cosine scores (higher is better).

    Isolation is structural: every call names one user, and no call can return
    another user's vectors. Ids are the store's chunk ids (int64).
    """

    dim: int

    def add(self, user_id: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add (or replace) vectors for ``user_id`` under the given chunk ids."""

    def search(
        self,
        user_id: str,
        queries: np.ndarray,
        k: int,
        allowed_ids: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` per query row: ``(scores, ids)``, each ``(n, k)``, ids ``-1`` padded.

        ``allowed_ids`` restricts the search to those chunk ids (metadata filters).
        """

    def delete(self, user_id: str, ids: np.ndarray) -> None:
        """Remove the given chunk ids of ``user_id`` (unknown ids are ignored)."""

    def delete_user(self, user_id: str) -> None:
        """Remove every vector and every file of ``user_id``."""

    def count(self, user_id: str) -> int:
        """Number of vectors held for ``user_id``."""

    def ids(self, user_id: str) -> np.ndarray:
        """All chunk ids held for ``user_id`` (int64, any order)."""

    def has_user(self, user_id: str) -> bool:
        """Whether this index holds vectors or files of ``user_id``."""

    def delete_users_except(self, keep: Collection[str]) -> int:
        """Remove every user's data except ``keep``'s (orphans of a crash mid-forget); how many went.

        Takes the ids to keep rather than listing the ids held, so a backend
        never needs to store raw user ids (Chroma keeps only hashed names).
        """

    def synced_version(self, user_id: str) -> int | None:
        """The store data version this user's vectors were last synchronized to."""

    def mark_synced(self, user_id: str, version: int) -> None:
        """Record that ``user_id``'s vectors now match store data version ``version``."""

    def save(self) -> None:
        """Persist every modified user's vectors."""

    def close(self) -> None:
        """Persist and release resources."""


@runtime_checkable
class HoldsVectors(Protocol):
    """An index that keeps exact copies of its vectors on this host (FAISS shards).

    Retrieval then reads a candidate's embedding from the index instead of the
    store: for a store on a database server that is a round trip saved per search.
    """

    def vectors(self, user_id: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` for those of ``ids`` held for ``user_id`` (others are left out)."""


def as_id_array(ids: object) -> np.ndarray:
    """Chunk ids as a contiguous int64 vector."""
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))


def as_query_matrix(queries: np.ndarray, dim: int) -> np.ndarray:
    """Queries as a contiguous float32 ``(n, dim)`` matrix."""
    matrix = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.shape[1] != dim:
        raise ValueError(f"query dimension {matrix.shape[1]} != index dimension {dim}")
    return matrix
