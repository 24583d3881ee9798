"""The engine-neutral store: every user's data behind one seam, for SQLite and PostgreSQL.

:class:`SQLStore` holds the SQL that both engines share, written in a portable
subset (``?`` placeholders, ``ON CONFLICT``, ``RETURNING``, no boolean
arithmetic; JSON kept as text; epoch-second timestamps; raw float32 embedding
bytes). An engine subclass supplies the hooks: connections and transactions
(scoped to one user, for PostgreSQL's row-level security), the global version
tick, one JSON comparison for metadata filters, scrubbing after deletes, and a
per-user lock for refresh. The repositories (persona, summaries, memory,
refresh, export) run their SQL only through :meth:`query` and
:meth:`transaction`, so they work on either engine.

Reads of chunks and documents live here; writes (ingest, replace, delete and
their cascade) in ``_writes.py``; the item listing and history in ``_items.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError, NotFoundError
from ..types import Chunk, LoadedItem
from ._items import ItemsMixin
from ._writes import WritesMixin

__all__ = ["CHUNK_COLUMNS", "Cursor", "SQLStore", "content_hash", "from_epoch", "load_json", "row_to_chunk", "to_epoch"]

CHUNK_COLUMNS = (
    "c.id, c.user_id, c.doc_id, c.text, d.kind, d.source, c.position, d.external_id, "
    "d.role, d.speaker, d.session, d.timestamp, d.metadata"
)


class Cursor(Protocol):
    """What a transaction yields: the DB-API subset the shared SQL uses."""

    rowcount: int

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
    def fetchone(self) -> tuple[Any, ...] | None: ...
    def fetchall(self) -> list[tuple[Any, ...]]: ...
    def __iter__(self) -> Iterator[tuple[Any, ...]]: ...


def to_epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


def load_json(value: Any, default: Any = None) -> Any:
    """A JSON column's value (text in both engines; a driver may already have decoded it)."""
    if value is None or value == "":
        return default
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode()
    return json.loads(value) if isinstance(value, str) else value


def content_hash(item: LoadedItem) -> str:
    """Identity of an input for deduplication.

    A document without a caller id is identified by its text alone (the same
    file ingested twice, under two paths, is one document); a chat turn by who
    said it, when and in which session too (two users' "ok" in different
    sessions are distinct). An input with a caller id is identified by the id
    and everything stored with it, so re-adding it unchanged is a no-op and
    any change replaces the stored version.
    """
    h = hashlib.sha256()
    h.update(item.kind.encode())
    if item.kind == "message":
        for part in (item.role, item.speaker, item.session, item.external_id):
            h.update(b"\x1f" + (part or "").encode())
        h.update(b"\x1f" + repr(to_epoch(item.timestamp)).encode())
    elif item.external_id is not None:
        h.update(b"\x1d" + item.external_id.encode("utf-8", "surrogatepass"))
        h.update(b"\x1f" + repr(to_epoch(item.timestamp)).encode())
    if item.external_id is not None:
        h.update(b"\x1f" + json.dumps(item.metadata, sort_keys=True, default=str).encode("utf-8", "surrogatepass"))
    h.update(b"\x1e" + item.text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def row_to_chunk(row: Sequence[Any]) -> Chunk:
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
        metadata=load_json(row[12], {}),
    )


class SQLStore(WritesMixin, ItemsMixin):
    """A store of users' data; one engine subclass per database (see the module docstring)."""

    #: ``"sqlite"`` or ``"postgresql"``.
    dialect: str = ""
    #: Largest number of values bound in one ``IN (...)`` list.
    in_batch: int = 900

    # ------------------------------------------------------------- engine hooks
    def transaction(self, user_id: str | None = None) -> AbstractContextManager[Cursor]:
        """A write transaction, all or nothing, scoped to ``user_id`` (``None``: admin scope)."""
        raise NotImplementedError

    def query(
        self, sql: str, params: Sequence[Any] = (), *, user_id: str | None = None, prepared: bool = False
    ) -> list[tuple[Any, ...]]:
        """Run a read query (scoped to ``user_id`` where the engine enforces it) and return all rows.

        ``prepared``: a read every search makes; the engine may keep its plan.
        """
        raise NotImplementedError

    def _next_version(self, cur: Cursor) -> int:
        """A global tick that never repeats (every data version is drawn from it)."""
        raise NotImplementedError

    def _json_filter(self, column: str, key: str, op: str, value: Any) -> tuple[str, list[Any]]:
        """SQL comparing field ``key`` of the JSON text ``column`` with ``value`` by ``op``."""
        raise NotImplementedError

    def _scrub_deleted(self) -> None:
        """Make deleted rows unrecoverable from the database files (after forget and deletes)."""
        raise NotImplementedError

    def user_lock(self, user_id: str, name: str, *, wait: bool = True) -> AbstractContextManager[bool]:
        """A lock on (``user_id``, ``name``) shared by every process and host using this store.

        Yields whether it was acquired (``wait=False`` yields ``False`` at once
        when another holder has it).
        """
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def own_by_id(self, alias: str) -> str:
        """The condition (one ``?``: the user id) for ``alias``'s rows of one user looked up by id.

        For ``WHERE <this> AND alias.id IN (...)``: the primary key must be the
        lookup's index, not an index that starts with ``user_id`` (which reads
        every row of the user). PostgreSQL plans that from its statistics.
        """
        return f"{alias}.user_id = ?"

    # ----------------------------------------------------------------- plumbing
    def _query_in(
        self, sql: str, user_id: str, values: Sequence[Any], batch: int | None = None, prepared: bool = False
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of ``sql`` for ``values``, in batches under the engine's bound-parameter limit.

        ``sql`` takes the user id as its first parameter and has one ``{marks}``
        where the ``IN (...)`` placeholders go.
        """
        batch = batch or self.in_batch
        for start in range(0, len(values), batch):
            part = values[start : start + batch]
            yield from self.query(sql.format(marks=",".join("?" * len(part))), (user_id, *part), user_id=user_id,
                                  prepared=prepared)

    # --------------------------------------------------------------------- meta
    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def check_embedder(self, name: str, dim: int, backend: str = "torch-fp32") -> None:
        """Record the embedder on first use; refuse an incompatible one later.

        Vectors of two models are not comparable, so mixing them would silently
        break retrieval. Backends of one model whose vectors agree within their
        stated cosine bound (torch fp32 and ONNX fp32) may share a store; the
        first recorded backend is kept.
        """
        from ..embeddings import backends_compatible

        with self.transaction() as cur:
            row = cur.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
            if row is None:
                cur.execute(
                    "INSERT INTO meta (key, value) VALUES ('embedder', ?) ON CONFLICT (key) DO NOTHING",
                    (json.dumps({"name": name, "dim": dim, "backend": backend}, sort_keys=True),),
                )
                return
            stored = json.loads(row[0])
            stored.setdefault("backend", "torch-fp32")
            if stored["name"] != name or stored["dim"] != dim or not backends_compatible(stored["backend"], backend):
                raise ConfigError(
                    f"this store was built with embedder {stored['name']!r} on "
                    f"{stored['backend']} (dim {stored['dim']}); it cannot be opened with {name!r} on "
                    f"{backend} (dim {dim}). Re-ingest into a new store to change embedders."
                )

    # -------------------------------------------------------------------- users
    def users(self) -> list[str]:
        return [r[0] for r in self.query("SELECT user_id FROM users ORDER BY user_id")]

    def has_user(self, user_id: str) -> bool:
        return bool(self.query("SELECT 1 FROM users WHERE user_id = ?", (user_id,), user_id=user_id))

    def data_version(self, user_id: str) -> int:
        """The user's data version: changes with every change to their documents (0: no data).

        Drawn from a global tick, so it never repeats: not for another change,
        and not for the same user id forgotten and written again.
        """
        rows = self.query("SELECT data_version FROM users WHERE user_id = ?", (user_id,), user_id=user_id)
        return int(rows[0][0]) if rows else 0

    def bump_version(self, cur: Cursor, user_id: str) -> int:
        """Give ``user_id`` a new data version inside ``cur``'s transaction; returns it."""
        self._lock_user(cur, user_id)
        version = self._next_version(cur)
        cur.execute("UPDATE users SET data_version = ? WHERE user_id = ?", (version, user_id))
        return version

    def _lock_user(self, cur: Cursor, user_id: str) -> int:
        """Create or lock the user's row for this transaction; returns their data version.

        Every write of a user takes this row first, so two writers of one user
        (two threads, processes or hosts) serialize on it: the second sees the
        first's documents before it checks for duplicates or caller ids.
        """
        import time

        row = cur.execute(
            "INSERT INTO users (user_id, created_at, data_version) VALUES (?, ?, 0) "
            "ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id RETURNING data_version",
            (user_id, time.time()),
        ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------------- chunks
    def chunk_ids(self, user_id: str) -> np.ndarray:
        rows = self.query("SELECT id FROM chunks WHERE user_id = ? ORDER BY id", (user_id,), user_id=user_id)
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def chunk_count(self, user_id: str) -> int:
        return int(self.query("SELECT COUNT(*) FROM chunks WHERE user_id = ?", (user_id,), user_id=user_id)[0][0])

    def chunk_texts(self, user_id: str) -> tuple[np.ndarray, list[str]]:
        rows = self.query("SELECT id, text FROM chunks WHERE user_id = ? ORDER BY id", (user_id,), user_id=user_id)
        return np.asarray([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def chunk_index_texts(self, user_id: str) -> tuple[np.ndarray, list[str]]:
        """``(ids, texts)`` as indexed for retrieval: chat turns prefixed with their speaker.

        ``index_text`` in ``chunking`` builds the same string for embedding, so
        the dense and the lexical index see one text per chunk.
        """
        rows = self.query(
            "SELECT c.id, CASE WHEN d.speaker IS NOT NULL THEN d.speaker || ': ' || c.text ELSE c.text END "
            "FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.user_id = ? ORDER BY c.id",
            (user_id,), user_id=user_id,
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
            blobs.append(bytes(blob))
        if not blobs:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)
        return np.asarray(out_ids, dtype=np.int64), vectors

    def all_embeddings(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.query(
            "SELECT id, embedding FROM chunks WHERE user_id = ? ORDER BY id", (user_id,), user_id=user_id
        )
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        ids = np.asarray([r[0] for r in rows], dtype=np.int64)
        return ids, np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype=np.float32).reshape(len(rows), -1)

    def chunks(self, user_id: str, ids: Sequence[int]) -> dict[int, Chunk]:
        """The chunks of ``user_id`` with these ids (others' ids are never returned)."""
        rows = self._query_in(
            f"SELECT {CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.doc_id "
            "WHERE c.user_id = ? AND c.id IN ({marks})",
            user_id, [int(i) for i in ids],
        )
        return {row[0]: row_to_chunk(row) for row in rows}

    def chunks_at_version(self, user_id: str, ids: Sequence[int]) -> tuple[dict[int, Chunk], int]:
        """``chunks(user_id, ids)`` and the user's data version, read together (one statement per batch).

        A search that ran on this host's cached indexes without reading the
        version first checks them here: the rows and the version come from one
        snapshot, so the same version means no write happened since the
        indexes were built. Version 0: the user is gone. -1: batches saw
        different versions (a write committed between them).
        """
        if not len(ids):
            return {}, self.data_version(user_id)
        found: dict[int, Chunk] = {}
        versions: set[int] = set()
        # The users row drives the join: a user with none of these chunks still
        # gives one row (the version), a user who is gone gives none.
        for row in self._query_in(
            f"SELECT u.data_version, {CHUNK_COLUMNS} "
            "FROM (SELECT user_id, data_version FROM users WHERE user_id = ?) u "
            "LEFT JOIN chunks c ON c.user_id = u.user_id AND c.id IN ({marks}) "
            "LEFT JOIN documents d ON d.id = c.doc_id",
            user_id, [int(i) for i in ids], prepared=True,
        ):
            versions.add(int(row[0]))
            if row[1] is not None:
                found[row[1]] = row_to_chunk(row[1:])
        if not versions:
            return found, 0
        return found, versions.pop() if len(versions) == 1 else -1

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

    def filtered_chunk_ids(self, user_id: str, **filters: Any) -> np.ndarray:
        """Chunk ids of ``user_id`` matching every given filter (those of :meth:`_document_filter`)."""
        clause, params = self._document_filter(user_id, **filters)
        rows = self.query(
            f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE {clause}", params, user_id=user_id
        )
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def _document_filter(
        self,
        user_id: str,
        *,
        sources: Sequence[str] | None = None,
        sessions: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        where: dict[str, Any] | None = None,
        external_ids: Sequence[str] | None = None,
        doc_ids: Sequence[int] | None = None,
    ) -> tuple[str, list[Any]]:
        """The ``WHERE`` clause (over ``documents d``) for these filters, with its parameters."""
        from ._where import compile_where

        clause = ["d.user_id = ?"]
        params: list[Any] = [user_id]
        for column, values in (
            ("d.source", sources), ("d.session", sessions), ("d.kind", kinds),
            ("d.external_id", external_ids), ("d.id", doc_ids),
        ):
            if values is not None:
                values = list(values)
                clause.append(f"{column} IN ({','.join('?' * len(values))})" if values else "1 = 0")
                params.extend(values)
        if since is not None:
            clause.append("d.timestamp >= ?")
            params.append(to_epoch(since))
        if until is not None:
            clause.append("d.timestamp < ?")
            params.append(to_epoch(until))
        if where:
            sql, where_params = compile_where(where, "d.metadata", self._json_filter)
            clause.append(sql)
            params.extend(where_params)
        return " AND ".join(clause), params

    def session_neighbors(self, chunk: Chunk, window: int) -> tuple[Chunk, ...]:
        """Up to ``window`` chat turns before and after ``chunk`` in its session, in order."""
        if chunk.kind != "message" or chunk.session is None or window <= 0:
            return ()
        rows = self.query(
            f"SELECT {CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.doc_id "
            "WHERE c.user_id = ? AND d.session = ? AND d.kind = 'message' "
            "ORDER BY d.timestamp, d.id, c.position",
            (chunk.user_id, chunk.session), user_id=chunk.user_id,
        )
        ids = [r[0] for r in rows]
        try:
            at = ids.index(chunk.id)
        except ValueError:
            return ()
        lo, hi = max(0, at - window), min(len(rows), at + window + 1)
        return tuple(row_to_chunk(r) for r in rows[lo:hi])

    # -------------------------------------------------------------------- stats
    def stats(self, user_id: str) -> dict[str, Any]:
        if not self.has_user(user_id):
            raise NotFoundError("unknown user (ids are case-sensitive)")
        (docs, messages, sessions, first, last) = self.query(
            "SELECT SUM(CASE WHEN kind = 'document' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN kind = 'message' THEN 1 ELSE 0 END), COUNT(DISTINCT session), "
            "MIN(timestamp), MAX(timestamp) FROM documents WHERE user_id = ?",
            (user_id,), user_id=user_id,
        )[0]
        (chunks, chars) = self.query(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(text)), 0) FROM chunks WHERE user_id = ?", (user_id,),
            user_id=user_id,
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
            "SELECT id, kind, source, external_id, role, speaker, session, timestamp, metadata, created_at, "
            "updated_at FROM documents WHERE user_id = ? ORDER BY id",
            (user_id,), user_id=user_id,
        ):
            docs[row[0]] = {
                "id": row[0], "kind": row[1], "source": row[2], "external_id": row[3], "role": row[4],
                "speaker": row[5], "session": row[6],
                "timestamp": from_epoch(row[7]).isoformat() if row[7] is not None else None,
                "metadata": load_json(row[8], {}), "created_at": from_epoch(row[9]).isoformat(),
                "updated_at": from_epoch(row[10] if row[10] is not None else row[9]).isoformat(),
                "chunks": [],
            }
        for cid, doc_id, position, text in self.query(
            "SELECT id, doc_id, position, text FROM chunks WHERE user_id = ? ORDER BY doc_id, position",
            (user_id,), user_id=user_id,
        ):
            docs[doc_id]["chunks"].append({"id": cid, "position": position, "text": text})
        return list(docs.values())


@contextmanager
def no_lock() -> Iterator[bool]:
    """A lock that is always free (an engine with one process per store)."""
    yield True
