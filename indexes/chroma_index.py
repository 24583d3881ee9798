"""Chroma backend: one collection per user, embedded or client/server.

Use the embedded ``PersistentClient`` on one machine, or an ``HttpClient`` to a
Chroma server (``chroma run``) for deployments that outgrow one. Each user gets
their own collection (named from a hash of the user id), so isolation does not
rest on a ``where`` filter being right. Embeddings are always passed in
explicitly: Chroma's default embedding function would download a model.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from personalize._ids import user_dir_name, validate_user_id
from personalize.errors import ConfigError, IndexBackendError, MissingDependencyError

from .base import EMPTY_IDS, as_id_array, as_query_matrix

__all__ = ["ChromaIndex"]

logger = logging.getLogger(__name__)

_PREFIX = "pz-"
#: An embedded Chroma names each segment's folder by the segment's UUID.
_SEGMENT_FOLDER = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _import_chromadb() -> Any:
    try:
        import chromadb
    except ImportError as exc:
        raise MissingDependencyError("chromadb", "chroma", "the Chroma index") from exc
    return chromadb


class ChromaIndex:
    """Per-user Chroma collections.

    Args:
        dim: vector dimension.
        path: folder for an embedded persistent Chroma (``PersistentClient``).
        host, port: a Chroma server to use instead (``HttpClient``).
        client: an existing Chroma client (takes precedence).
    """

    def __init__(
        self,
        dim: int,
        *,
        path: str | os.PathLike[str] | None = None,
        host: str | None = None,
        port: int = 8000,
        client: Any = None,
    ) -> None:
        chromadb = _import_chromadb()
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        if client is not None:
            self._client = client
        elif host is not None:
            self._client = chromadb.HttpClient(host=host, port=port, settings=settings)
        elif path is not None:
            Path(path).mkdir(parents=True, exist_ok=True)
            self._client = chromadb.PersistentClient(path=str(path), settings=settings)
        else:
            raise ConfigError("ChromaIndex needs a path (embedded), a host (server) or a client")
        self.dim = int(dim)
        self.path = Path(path) if path is not None else None
        self._collections: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._max_batch = int(getattr(self._client, "get_max_batch_size", lambda: 5000)())

    def _name(self, user_id: str) -> str:
        return _PREFIX + user_dir_name(user_id)

    def _collection(self, user_id: str, *, create: bool) -> Any | None:
        validate_user_id(user_id)
        with self._lock:
            coll = self._collections.get(user_id)
            if coll is not None:
                return coll
            name = self._name(user_id)
            if create:
                coll = self._client.get_or_create_collection(
                    name,
                    # Only the hashed name identifies the user: a raw id in
                    # Chroma's metadata was seen in another collection's HNSW
                    # files after forget (docs/reliability.md).
                    metadata={"hnsw:space": "cosine"},
                    embedding_function=None,
                )
            else:
                try:
                    coll = self._client.get_collection(name, embedding_function=None)
                except Exception:  # NotFoundError across chromadb versions
                    return None
            self._collections[user_id] = coll
            return coll

    def add(self, user_id: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = as_id_array(ids)
        if len(ids) == 0:
            return
        vectors = as_query_matrix(vectors, self.dim)
        coll = self._collection(user_id, create=True)
        try:
            for start in range(0, len(ids), self._max_batch):
                part = slice(start, start + self._max_batch)
                coll.upsert(ids=[str(i) for i in ids[part]], embeddings=vectors[part])
        except Exception as exc:
            raise IndexBackendError(f"Chroma upsert failed: {exc}") from exc

    def search(
        self,
        user_id: str,
        queries: np.ndarray,
        k: int,
        allowed_ids: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = as_query_matrix(queries, self.dim)
        n = len(queries)
        scores = np.zeros((n, max(k, 0)), np.float32)
        out_ids = np.full((n, max(k, 0)), -1, np.int64)
        coll = self._collection(user_id, create=False)
        if coll is None or k <= 0:
            return scores, out_ids
        total = coll.count()
        if total == 0:
            return scores, out_ids
        kwargs: dict[str, Any] = {}
        if allowed_ids is not None:
            allowed = as_id_array(allowed_ids)
            if len(allowed) == 0:
                return scores, out_ids
            kwargs["ids"] = [str(i) for i in allowed]
            total = min(total, len(allowed))
        try:
            result = coll.query(
                query_embeddings=queries,
                n_results=min(k, total),
                include=["distances"],
                **kwargs,
            )
        except Exception as exc:
            raise IndexBackendError(f"Chroma query failed: {exc}") from exc
        for row, (row_ids, row_dist) in enumerate(zip(result["ids"], result["distances"])):
            m = len(row_ids)
            out_ids[row, :m] = [int(i) for i in row_ids]
            scores[row, :m] = 1.0 - np.asarray(row_dist, dtype=np.float32)  # cosine distance -> similarity
        return scores, out_ids

    def delete(self, user_id: str, ids: np.ndarray) -> None:
        ids = as_id_array(ids)
        coll = self._collection(user_id, create=False)
        if coll is None or len(ids) == 0:
            return
        for start in range(0, len(ids), self._max_batch):
            coll.delete(ids=[str(i) for i in ids[start : start + self._max_batch]])

    def delete_user(self, user_id: str) -> None:
        with self._lock:
            self._collections.pop(validate_user_id(user_id), None)
            try:
                self._client.delete_collection(self._name(user_id))
            except Exception:  # already gone
                logger.debug("no Chroma collection to delete for this user")
            self._scrub()

    def _scrub(self) -> None:
        """Erase what an embedded Chroma leaves on disk after a collection is deleted.

        - Its SQLite file: deleting a collection frees its rows (vectors, the
          collection's metadata) but SQLite keeps the bytes in free pages and
          the WAL until they are reused; VACUUM rewrites the file without them.
        - Its HNSW folder: Chroma (1.5) deletes the collection's segment rows
          but leaves the folder named by the segment id, vectors and all.
          Every segment folder that no segment row names any more is removed.

        A Chroma *server*'s disk is out of reach from here: see docs/operations.md.
        """
        if self.path is None:
            return
        import sqlite3

        db = self.path / "chroma.sqlite3"
        if not db.exists():
            return
        try:
            conn = sqlite3.connect(str(db), timeout=30)
            try:
                conn.execute("PRAGMA secure_delete=ON")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                segments = {str(row[0]) for row in conn.execute("SELECT id FROM segments")}
            finally:
                conn.close()
        except sqlite3.Error as exc:
            logger.warning("could not scrub Chroma's SQLite file after a deletion: %s", exc)
            return
        for folder in self.path.iterdir():
            if folder.is_dir() and _SEGMENT_FOLDER.fullmatch(folder.name) and folder.name not in segments:
                shutil.rmtree(folder, ignore_errors=True)

    def count(self, user_id: str) -> int:
        coll = self._collection(user_id, create=False)
        return 0 if coll is None else int(coll.count())

    def ids(self, user_id: str) -> np.ndarray:
        coll = self._collection(user_id, create=False)
        if coll is None:
            return EMPTY_IDS
        found = coll.get(include=[])["ids"]
        return np.asarray([int(i) for i in found], dtype=np.int64) if found else EMPTY_IDS

    def has_user(self, user_id: str) -> bool:
        return self._collection(user_id, create=False) is not None

    def delete_users_except(self, keep: Collection[str]) -> int:
        wanted = {self._name(u) for u in keep}
        gone = 0
        with self._lock:
            for coll in self._client.list_collections():
                name = str(getattr(coll, "name", coll))
                if name.startswith(_PREFIX) and name not in wanted:
                    self._client.delete_collection(name)
                    gone += 1
            self._collections = {u: c for u, c in self._collections.items() if self._name(u) in wanted}
            if gone:
                self._scrub()
        return gone

    def synced_version(self, user_id: str) -> int | None:
        coll = self._collection(user_id, create=False)
        if coll is None:
            return None
        version = (coll.metadata or {}).get("personalize_version")
        return None if version is None else int(version)

    def mark_synced(self, user_id: str, version: int) -> None:
        coll = self._collection(user_id, create=True)
        # (personalize_user: a raw user id that older versions stored; dropped here.)
        metadata = {k: v for k, v in (coll.metadata or {}).items()
                    if not k.startswith("hnsw:") and k != "personalize_user"}
        metadata["personalize_version"] = int(version)
        coll.modify(metadata=metadata)

    def save(self) -> None:
        """Chroma persists on every write."""

    def close(self) -> None:
        self._collections.clear()
