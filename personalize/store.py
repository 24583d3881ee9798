"""SQLite store: users, documents, chunks and their embeddings (the source of truth).

One connection per process, guarded by a lock (SQLite serializes writers
anyway); WAL mode so readers never block the writer; ``busy_timeout`` so that
several processes can share one data directory. ``secure_delete`` is on so
that ``forget`` overwrites a user's text in the database pages rather than
leaving it in free pages.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ._ids import validate_user_id
from ._schema import SCHEMA, SCHEMA_VERSION, USER_TABLES
from .errors import ConfigError, NotFoundError, StoreError
from .types import Chunk, LoadedItem

__all__ = ["NewDocument", "Store", "WriteResult", "content_hash", "from_epoch", "to_epoch"]

_CHUNK_COLUMNS = (
    "c.id, c.user_id, c.doc_id, c.text, d.kind, d.source, c.position, d.external_id, "
    "d.role, d.speaker, d.session, d.timestamp, d.metadata"
)


def to_epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


def content_hash(item: LoadedItem) -> str:
    """Identity of an input for deduplication.

    A document is identified by its text alone (the same file ingested twice,
    under two paths, is one document); a chat turn by who said it, when and in
    which session too (two users' "ok" in different sessions are distinct).
    """
    h = hashlib.sha256()
    h.update(item.kind.encode())
    if item.kind == "message":
        for part in (item.role, item.speaker, item.session, item.external_id):
            h.update(b"\x1f" + (part or "").encode())
        h.update(b"\x1f" + repr(to_epoch(item.timestamp)).encode())
    h.update(b"\x1e" + item.text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


@dataclass(frozen=True)
class NewDocument:
    """A loaded item, chunked and embedded, ready to be written."""

    item: LoadedItem
    digest: str
    chunks: Sequence[str]
    embeddings: np.ndarray


@dataclass(frozen=True)
class WriteResult:
    """What one committed :meth:`Store.add_documents` call wrote.

    Attributes:
        document_ids: ids of the new documents.
        chunk_ids: ids of their chunks, aligned with ``vectors``.
        vectors: the embeddings written, one row per chunk id.
        duplicates: documents skipped because the user already had them.
        version: the user's data version after the commit.
    """

    document_ids: list[int]
    chunk_ids: np.ndarray
    vectors: np.ndarray
    duplicates: int
    version: int


def _row_to_chunk(row: Sequence[Any]) -> Chunk:
    return Chunk(
        id=row[0],
        user_id=row[1],
        doc_id=row[2],
        text=row[3],
        kind=row[4],
        source=row[5],
        position=row[6],
        external_id=row[7],
        role=row[8],
        speaker=row[9],
        session=row[10],
        timestamp=from_epoch(row[11]),
        metadata=json.loads(row[12]) if row[12] else {},
    )


class Store:
    """The SQLite database of one data directory.

    Args:
        path: the SQLite file (its folder is created).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(
                str(self.path), timeout=60.0, check_same_thread=False, isolation_level=None
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.execute("PRAGMA busy_timeout=60000")
            self._conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self._closed = False
        with self.transaction() as cur:
            cur.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    # ---------------------------------------------------------------- plumbing
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """A write transaction (``BEGIN IMMEDIATE``): all or nothing."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query and return all rows."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _query_in(self, sql: str, user_id: str, values: Sequence[Any], batch: int = 900) -> Iterator[tuple[Any, ...]]:
        """Rows of ``sql`` for ``values``, in batches under SQLite's bound-parameter limit.

        ``sql`` takes the user id as its first parameter and has one ``{marks}``
        where the ``IN (...)`` placeholders go.
        """
        for start in range(0, len(values), batch):
            part = values[start : start + batch]
            yield from self.query(sql.format(marks=",".join("?" * len(part))), (user_id, *part))

    def close(self) -> None:
        """Checkpoint the WAL and close (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError:  # another process holds it: fine
                pass
            self._conn.close()

    # -------------------------------------------------------------------- meta
    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def check_embedder(self, name: str, dim: int, backend: str = "torch-fp32") -> None:
        """Record the embedder on first use; refuse an incompatible one later.

        Vectors of two models are not comparable, so mixing them would silently
        break retrieval. Backends of one model whose vectors agree within their
        stated cosine bound (torch fp32 and ONNX fp32) may share a directory;
        the first recorded backend is kept.
        """
        from .embeddings import backends_compatible

        with self.transaction() as cur:
            row = cur.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
            if row is None:
                cur.execute(
                    "INSERT INTO meta VALUES ('embedder', ?)",
                    (json.dumps({"name": name, "dim": dim, "backend": backend}, sort_keys=True),),
                )
                return
            stored = json.loads(row[0])
            stored.setdefault("backend", "torch-fp32")
            if stored["name"] != name or stored["dim"] != dim or not backends_compatible(stored["backend"], backend):
                raise ConfigError(
                    f"this data directory was built with embedder {stored['name']!r} on "
                    f"{stored['backend']} (dim {stored['dim']}); it cannot be opened with {name!r} on "
                    f"{backend} (dim {dim}). Re-ingest into a new directory to change embedders."
                )

    # ------------------------------------------------------------------- users
    def users(self) -> list[str]:
        return [r[0] for r in self.query("SELECT user_id FROM users ORDER BY user_id")]

    def has_user(self, user_id: str) -> bool:
        return bool(self.query("SELECT 1 FROM users WHERE user_id = ?", (user_id,)))

    def data_version(self, user_id: str) -> int:
        """A counter bumped by every change to ``user_id``'s documents (0: no data)."""
        rows = self.query("SELECT data_version FROM users WHERE user_id = ?", (user_id,))
        return int(rows[0][0]) if rows else 0

    def bump_version(self, cur: sqlite3.Cursor, user_id: str) -> int:
        cur.execute(
            "INSERT INTO users (user_id, created_at, data_version) VALUES (?, ?, 1) "
            "ON CONFLICT (user_id) DO UPDATE SET data_version = data_version + 1",
            (user_id, time.time()),
        )
        return int(cur.execute("SELECT data_version FROM users WHERE user_id = ?", (user_id,)).fetchone()[0])

    # --------------------------------------------------------------- documents
    def known_hashes(self, user_id: str, digests: Iterable[str]) -> set[str]:
        """Which of ``digests`` this user already has (deduplication before embedding)."""
        rows = self._query_in(
            "SELECT content_hash FROM documents WHERE user_id = ? AND content_hash IN ({marks})",
            user_id, list(digests), batch=500,
        )
        return {r[0] for r in rows}

    def add_documents(self, user_id: str, docs: Sequence[NewDocument]) -> WriteResult:
        """Write documents with their chunks and embeddings in ONE transaction.

        Documents the user already has (same content hash) are skipped, even
        when another process wrote them since the caller checked.
        """
        validate_user_id(user_id)
        doc_ids: list[int] = []
        chunk_ids: list[int] = []
        written: list[np.ndarray] = []
        duplicates = 0
        now = time.time()
        with self.transaction() as cur:
            for doc in docs:
                item = doc.item
                cur.execute(
                    "INSERT OR IGNORE INTO documents (user_id, kind, source, external_id, content_hash, "
                    "role, speaker, session, timestamp, metadata, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        user_id, item.kind, item.source, item.external_id, doc.digest, item.role,
                        item.speaker, item.session, to_epoch(item.timestamp),
                        json.dumps(item.metadata, sort_keys=True, default=str), now,
                    ),
                )
                if cur.rowcount == 0:
                    duplicates += 1
                    continue
                doc_id = int(cur.lastrowid)
                doc_ids.append(doc_id)
                vectors = np.ascontiguousarray(doc.embeddings, dtype=np.float32)
                for position, (text, vector) in enumerate(zip(doc.chunks, vectors)):
                    cur.execute(
                        "INSERT INTO chunks (user_id, doc_id, position, text, embedding) VALUES (?, ?, ?, ?, ?)",
                        (user_id, doc_id, position, text, vector.tobytes()),
                    )
                    chunk_ids.append(int(cur.lastrowid))
                written.append(vectors[: len(doc.chunks)])
            if doc_ids:
                version = self.bump_version(cur, user_id)
            else:
                cur.execute(
                    "INSERT OR IGNORE INTO users (user_id, created_at, data_version) VALUES (?, ?, 0)",
                    (user_id, now),
                )
                version = int(
                    cur.execute("SELECT data_version FROM users WHERE user_id = ?", (user_id,)).fetchone()[0]
                )
        vectors_out = np.vstack(written) if written else np.zeros((0, 0), np.float32)
        return WriteResult(doc_ids, np.asarray(chunk_ids, dtype=np.int64), vectors_out, duplicates, version)

    def delete_documents(self, user_id: str, doc_ids: Sequence[int]) -> list[int]:
        """Delete some of a user's documents; returns the chunk ids removed."""
        removed: list[int] = []
        with self.transaction() as cur:
            for doc_id in doc_ids:
                removed.extend(
                    r[0] for r in cur.execute(
                        "SELECT id FROM chunks WHERE user_id = ? AND doc_id = ?", (user_id, doc_id)
                    )
                )
                cur.execute("DELETE FROM chunks WHERE user_id = ? AND doc_id = ?", (user_id, doc_id))
                cur.execute("DELETE FROM documents WHERE user_id = ? AND id = ?", (user_id, doc_id))
            if removed:
                self.bump_version(cur, user_id)
        return removed

    # ------------------------------------------------------------------ chunks
    def chunk_ids(self, user_id: str) -> np.ndarray:
        rows = self.query("SELECT id FROM chunks WHERE user_id = ? ORDER BY id", (user_id,))
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def chunk_texts(self, user_id: str) -> tuple[np.ndarray, list[str]]:
        rows = self.query("SELECT id, text FROM chunks WHERE user_id = ? ORDER BY id", (user_id,))
        return np.asarray([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def chunk_index_texts(self, user_id: str) -> tuple[np.ndarray, list[str]]:
        """``(ids, texts)`` as indexed for retrieval: chat turns prefixed with their speaker.

        ``index_text`` in ``ingest`` builds the same string for embedding, so the
        dense and the lexical index see one text per chunk.
        """
        rows = self.query(
            "SELECT c.id, CASE WHEN d.speaker IS NOT NULL THEN d.speaker || ': ' || c.text ELSE c.text END "
            "FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.user_id = ? ORDER BY c.id",
            (user_id,),
        )
        return np.asarray([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def embeddings(self, user_id: str, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` for those of ``ids`` that belong to ``user_id``."""
        out_ids: list[int] = []
        blobs: list[bytes] = []
        for cid, blob in self._query_in(
            "SELECT id, embedding FROM chunks WHERE user_id = ? AND id IN ({marks})", user_id, [int(i) for i in ids]
        ):
            out_ids.append(cid)
            blobs.append(blob)
        if not blobs:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)
        return np.asarray(out_ids, dtype=np.int64), vectors

    def all_embeddings(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.query("SELECT id, embedding FROM chunks WHERE user_id = ? ORDER BY id", (user_id,))
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        ids = np.asarray([r[0] for r in rows], dtype=np.int64)
        return ids, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)

    def chunks(self, user_id: str, ids: Sequence[int]) -> dict[int, Chunk]:
        """The chunks of ``user_id`` with these ids (others' ids are never returned)."""
        rows = self._query_in(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.doc_id "
            "WHERE c.user_id = ? AND c.id IN ({marks})",
            user_id, [int(i) for i in ids],
        )
        return {row[0]: _row_to_chunk(row) for row in rows}

    def provenance(self, user_id: str, ids: Sequence[int]) -> dict[int, tuple[int, str | None, str | None]]:
        """``{chunk id: (document id, caller's external id, source)}`` for ``user_id``'s chunks among ``ids``.

        What a citation needs, without the chunk's text and metadata: the
        agent cites every source of a summary or fact it considers, and
        reading whole chunks for that cost more than the search itself.
        """
        rows = self._query_in(
            "SELECT c.id, c.doc_id, d.external_id, d.source FROM chunks c JOIN documents d ON d.id = c.doc_id "
            "WHERE c.user_id = ? AND c.id IN ({marks})",
            user_id, list(dict.fromkeys(int(i) for i in ids)),
        )
        return {cid: (doc_id, external_id, source) for cid, doc_id, external_id, source in rows}

    def timestamps(self, user_id: str, ids: Sequence[int]) -> dict[int, float | None]:
        """Epoch timestamps of the documents behind these chunks (recency ranking)."""
        rows = self._query_in(
            "SELECT c.id, d.timestamp FROM chunks c JOIN documents d ON d.id = c.doc_id "
            "WHERE c.user_id = ? AND c.id IN ({marks})",
            user_id, [int(i) for i in ids],
        )
        return dict(rows)

    def filtered_chunk_ids(
        self,
        user_id: str,
        *,
        sources: Sequence[str] | None = None,
        sessions: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> np.ndarray:
        """Chunk ids of ``user_id`` matching every given filter (``None`` = no filter)."""
        where = ["c.user_id = ?"]
        params: list[Any] = [user_id]
        for column, values in (("d.source", sources), ("d.session", sessions), ("d.kind", kinds)):
            if values is not None:
                values = list(values)
                where.append(f"{column} IN ({','.join('?' * len(values))})" if values else "0")
                params.extend(values)
        if since is not None:
            where.append("d.timestamp >= ?")
            params.append(to_epoch(since))
        if until is not None:
            where.append("d.timestamp < ?")
            params.append(to_epoch(until))
        rows = self.query(
            f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE {' AND '.join(where)}",
            params,
        )
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def session_neighbors(self, chunk: Chunk, window: int) -> tuple[Chunk, ...]:
        """Up to ``window`` chat turns before and after ``chunk`` in its session, in order."""
        if chunk.kind != "message" or chunk.session is None or window <= 0:
            return ()
        rows = self.query(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.doc_id "
            "WHERE c.user_id = ? AND d.session = ? AND d.kind = 'message' "
            "ORDER BY d.timestamp, d.id, c.position",
            (chunk.user_id, chunk.session),
        )
        ids = [r[0] for r in rows]
        try:
            at = ids.index(chunk.id)
        except ValueError:
            return ()
        lo, hi = max(0, at - window), min(len(rows), at + window + 1)
        return tuple(_row_to_chunk(r) for r in rows[lo:hi])

    # ----------------------------------------------------------------- stats
    def stats(self, user_id: str) -> dict[str, Any]:
        if not self.has_user(user_id):
            raise NotFoundError("unknown user (ids are case-sensitive)")
        (docs, messages, sessions, first, last) = self.query(
            "SELECT SUM(kind = 'document'), SUM(kind = 'message'), COUNT(DISTINCT session), "
            "MIN(timestamp), MAX(timestamp) FROM documents WHERE user_id = ?",
            (user_id,),
        )[0]
        (chunks, chars) = self.query(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(text)), 0) FROM chunks WHERE user_id = ?", (user_id,)
        )[0]
        return {
            "user_id": user_id,
            "documents": int(docs or 0),
            "messages": int(messages or 0),
            "sessions": int(sessions or 0),
            "chunks": int(chunks),
            "characters": int(chars),
            "first_timestamp": from_epoch(first),
            "last_timestamp": from_epoch(last),
            "data_version": self.data_version(user_id),
        }

    def documents(self, user_id: str) -> list[dict[str, Any]]:
        """Every document and message of ``user_id`` with its chunks (for export)."""
        docs: dict[int, dict[str, Any]] = {}
        for row in self.query(
            "SELECT id, kind, source, external_id, role, speaker, session, timestamp, metadata, created_at "
            "FROM documents WHERE user_id = ? ORDER BY id",
            (user_id,),
        ):
            docs[row[0]] = {
                "id": row[0], "kind": row[1], "source": row[2], "external_id": row[3], "role": row[4],
                "speaker": row[5], "session": row[6],
                "timestamp": from_epoch(row[7]).isoformat() if row[7] is not None else None,
                "metadata": json.loads(row[8]), "created_at": from_epoch(row[9]).isoformat(),
                "chunks": [],
            }
        for cid, doc_id, position, text in self.query(
            "SELECT id, doc_id, position, text FROM chunks WHERE user_id = ? ORDER BY doc_id, position",
            (user_id,),
        ):
            docs[doc_id]["chunks"].append({"id": cid, "position": position, "text": text})
        return list(docs.values())

    # ----------------------------------------------------------------- forget
    def delete_user(self, user_id: str) -> None:
        """Delete every row of ``user_id`` and scrub the freed pages and the WAL."""
        validate_user_id(user_id)
        with self.transaction() as cur:
            for table in USER_TABLES:
                cur.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
        with self._lock:
            # secure_delete zeroed the freed pages in the WAL frames; checkpoint so
            # the main file gets them and truncate the WAL, then VACUUM to drop
            # any stale copy (e.g. in an index b-tree page that got rebalanced).
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
