"""Writes of the store: ingest with caller-id identity, deletes and their cascade, forget.

Identity: within a user, the caller's id names a document or message. A new
version replaces the stored one in the same transaction that writes it (rows,
chunks and embeddings), so a reader sees the old version or the new one, never
both or neither. Everything derived only from a deleted item goes with it in
that transaction: its chunks; persona facts whose only evidence it was (facts
with other evidence lose it as a source); task summaries built from it (the
next refresh rebuilds them); memory lines restating the facts that went. The
vector and BM25 indexes follow from the new data version.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._ids import validate_user_id
from ..errors import ConflictError

if TYPE_CHECKING:
    from ..types import LoadedItem
    from .base import Cursor

__all__ = ["DeleteCounts", "NewDocument", "WriteResult", "WritesMixin", "new_call_id"]

ON_CONFLICT = ("replace", "skip", "error")


def new_call_id() -> str:
    """An id for one public call, recorded with what it wrote and in the history."""
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class NewDocument:
    """A loaded item, chunked and embedded, ready to be written."""

    item: LoadedItem
    digest: str
    chunks: Sequence[str]
    embeddings: np.ndarray


@dataclass(frozen=True)
class WriteResult:
    """What one committed :meth:`WritesMixin.add_documents` call wrote.

    Attributes:
        document_ids: ids of the new documents.
        chunk_ids: ids of their chunks, aligned with ``vectors``.
        vectors: the embeddings written, one row per chunk id.
        duplicates: documents skipped because the user already had them.
        version: the user's data version after the commit.
        previous_version: the user's data version before it (0: a new user).
        removed_chunk_ids: chunks of replaced versions, gone with this commit.
        replaced: documents replaced by a new version under the same caller id.
        skipped: documents not written because their caller id existed (``on_conflict="skip"``).
    """

    document_ids: list[int]
    chunk_ids: np.ndarray
    vectors: np.ndarray
    duplicates: int
    version: int
    previous_version: int = 0
    removed_chunk_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    replaced: int = 0
    skipped: int = 0


@dataclass
class DeleteCounts:
    """What a delete removed (rows), and the chunk ids the indexes must drop."""

    documents: int = 0
    chunks: int = 0
    facts: int = 0
    chunk_ids: list[int] = field(default_factory=list)
    fact_texts: list[str] = field(default_factory=list)
    chunk_texts: list[str] = field(default_factory=list, repr=False)

    def __iadd__(self, other: DeleteCounts) -> DeleteCounts:
        self.documents += other.documents
        self.chunks += other.chunks
        self.facts += other.facts
        self.chunk_ids.extend(other.chunk_ids)
        self.fact_texts.extend(other.fact_texts)
        self.chunk_texts.extend(other.chunk_texts)
        return self


class WritesMixin:
    """Ingest, delete and forget, for :class:`~personalize.storage.base.SQLStore`."""

    # ------------------------------------------------------------------- ingest
    def add_documents(
        self,
        user_id: str,
        docs: Sequence[NewDocument],
        *,
        on_conflict: str = "replace",
        call: str | None = None,
    ) -> WriteResult:
        """Write documents with their chunks and embeddings in ONE transaction.

        Documents the user already has (same content hash) are skipped, even
        when another process wrote them since the caller checked. A document
        whose caller id the user already has replaces it (``on_conflict``
        ``"replace"``), is skipped (``"skip"``) or fails the transaction
        (``"error"``: :class:`~personalize.errors.ConflictError`). Versions
        written earlier by the same ``call`` are kept: one input (an mbox under
        one id) may yield several items, in several batches.
        """
        validate_user_id(user_id)
        if on_conflict not in ON_CONFLICT:
            from ..errors import ConfigError

            raise ConfigError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, not {on_conflict!r}")
        from .base import to_epoch

        call = call or new_call_id()
        doc_ids: list[int] = []
        chunk_ids: list[int] = []
        written: list[np.ndarray] = []
        duplicates = skipped = replaced = 0
        removed = DeleteCounts()
        now = time.time()
        with self.transaction(user_id) as cur:
            previous = self._lock_user(cur, user_id)
            for doc in docs:
                item = doc.item
                if cur.execute(
                    "SELECT 1 FROM documents WHERE user_id = ? AND content_hash = ?", (user_id, doc.digest)
                ).fetchone():
                    duplicates += 1
                    continue
                created = now
                if item.external_id is not None:
                    old = cur.execute(
                        "SELECT id, created_at FROM documents WHERE user_id = ? AND external_id = ? "
                        "AND (call IS NULL OR call <> ?) ORDER BY id",
                        (user_id, item.external_id, call),
                    ).fetchall()
                    if old:
                        if on_conflict == "skip":
                            skipped += 1
                            continue
                        if on_conflict == "error":
                            raise ConflictError("an input's caller id already exists (on_conflict='error')")
                        created = min(float(r[1]) for r in old)
                        removed += self._delete_rows(cur, user_id, [int(r[0]) for r in old])
                        replaced += len(old)
                row = cur.execute(
                    "INSERT INTO documents (user_id, kind, source, external_id, content_hash, role, speaker, "
                    "session, timestamp, metadata, created_at, updated_at, call, text) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        user_id, item.kind, item.source, item.external_id, doc.digest, item.role,
                        item.speaker, item.session, to_epoch(item.timestamp),
                        json.dumps(item.metadata, sort_keys=True, default=str), created, now, call, item.text,
                    ),
                ).fetchone()
                doc_id = int(row[0])
                doc_ids.append(doc_id)
                vectors = np.ascontiguousarray(doc.embeddings, dtype=np.float32)
                for position, (text, vector) in enumerate(zip(doc.chunks, vectors)):
                    chunk_ids.append(int(cur.execute(
                        "INSERT INTO chunks (user_id, doc_id, position, text, embedding) "
                        "VALUES (?, ?, ?, ?, ?) RETURNING id",
                        (user_id, doc_id, position, text, vector.tobytes()),
                    ).fetchone()[0]))
                written.append(vectors[: len(doc.chunks)])
            if removed.documents:
                self._cascade(cur, user_id, removed)
            version = self.bump_version(cur, user_id) if (doc_ids or removed.documents) else previous
            if doc_ids or removed.documents:
                self.record(cur, user_id, "replace" if removed.documents else "add", call, "documents", {
                    "added": len(doc_ids), "replaced": replaced, "chunks_removed": removed.chunks,
                    "facts_removed": removed.facts,
                    "external_ids": sorted({d.item.external_id for d in docs if d.item.external_id})[:100],
                })
        vectors_out = np.vstack(written) if written else np.zeros((0, 0), np.float32)
        return WriteResult(
            doc_ids, np.asarray(chunk_ids, dtype=np.int64), vectors_out, duplicates, version, previous,
            np.asarray(removed.chunk_ids, dtype=np.int64), replaced, skipped,
        )

    def existing_external_ids(self, user_id: str, external_ids: Sequence[str]) -> set[str]:
        """Which of these caller ids the user already has."""
        rows = self._query_in(
            "SELECT DISTINCT external_id FROM documents WHERE user_id = ? AND external_id IN ({marks})",
            user_id, list(dict.fromkeys(external_ids)),
        )
        return {r[0] for r in rows}

    def known_hashes(self, user_id: str, digests: Sequence[str]) -> set[str]:
        """Which of ``digests`` this user already has (deduplication before embedding)."""
        rows = self._query_in(
            "SELECT content_hash FROM documents WHERE user_id = ? AND content_hash IN ({marks})",
            user_id, list(digests), batch=500,
        )
        return {r[0] for r in rows}

    # ------------------------------------------------------------------- delete
    def delete_documents(
        self, user_id: str, doc_ids: Sequence[int], *, call: str | None = None, operation: str = "delete"
    ) -> DeleteCounts:
        """Delete some of a user's documents and what was derived only from them, in one transaction."""
        validate_user_id(user_id)
        ids = [int(i) for i in doc_ids]
        counts = DeleteCounts()
        if not ids:
            return counts
        with self.transaction(user_id) as cur:
            self._lock_user(cur, user_id)
            counts = self._delete_rows(cur, user_id, ids)
            if counts.documents:
                self._cascade(cur, user_id, counts)
                self.bump_version(cur, user_id)
                self.record(cur, user_id, operation, call or new_call_id(), "documents", {
                    "documents": counts.documents, "chunks": counts.chunks, "facts": counts.facts,
                })
        if counts.documents:
            self._scrub_deleted()
        return counts

    def _delete_rows(self, cur: Cursor, user_id: str, doc_ids: Sequence[int]) -> DeleteCounts:
        counts = DeleteCounts()
        for start in range(0, len(doc_ids), self.in_batch):
            part = list(doc_ids[start : start + self.in_batch])
            marks = ",".join("?" * len(part))
            for chunk_id, text in cur.execute(
                f"DELETE FROM chunks WHERE user_id = ? AND doc_id IN ({marks}) RETURNING id, text", (user_id, *part)
            ).fetchall():
                counts.chunk_ids.append(int(chunk_id))
                counts.chunk_texts.append(text)
            counts.documents += len(cur.execute(
                f"DELETE FROM documents WHERE user_id = ? AND id IN ({marks}) RETURNING id", (user_id, *part)
            ).fetchall())
        counts.chunks = len(counts.chunk_ids)
        return counts

    def _cascade(self, cur: Cursor, user_id: str, counts: DeleteCounts) -> None:
        """Facts, summaries and memory lines that depended only on the removed chunks go too."""
        from .base import load_json

        gone = set(counts.chunk_ids)
        if not gone:
            return
        for fact_id, sources, text, generator in cur.execute(
            "SELECT id, sources, text, generator FROM facts WHERE user_id = ? ORDER BY id DESC", (user_id,)
        ).fetchall():
            ids = load_json(sources, [])
            if not ids or not gone.intersection(ids):
                continue
            if generator == "manual":  # made by hand: only an explicit delete removes it
                cur.execute("UPDATE facts SET sources = ? WHERE id = ?",
                            (json.dumps([i for i in ids if i not in gone]), fact_id))
                continue
            kept = [i for i in ids if i not in gone]
            if kept:
                cur.execute("UPDATE facts SET sources = ? WHERE id = ?", (json.dumps(kept), fact_id))
            else:
                unlink_fact(cur, user_id, int(fact_id))
                counts.facts += 1
                counts.fact_texts.append(text)
        for task, sources in cur.execute(
            "SELECT task, sources FROM summaries WHERE user_id = ?", (user_id,)
        ).fetchall():
            if gone.intersection(load_json(sources, [])):
                # Stale: it may quote the deleted item. The next refresh rebuilds it.
                cur.execute("DELETE FROM summaries WHERE user_id = ? AND task = ?", (user_id, task))
        scrub_memory_lines(cur, user_id, counts.fact_texts, _only_in(cur, user_id, counts.chunk_texts))

    # ------------------------------------------------------------------ history
    def record(self, cur: Cursor, user_id: str, operation: str, call: str, target: str, detail: dict[str, Any]) -> None:
        """Add an entry to the user's history (ids and counts only, never the user's text)."""
        cur.execute(
            "INSERT INTO history (user_id, at, operation, call, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (user_id, time.time(), operation, call, target, json.dumps(detail, sort_keys=True, default=str)),
        )

    # ------------------------------------------------------------------- forget
    def delete_user(self, user_id: str) -> None:
        """Delete every row of ``user_id`` and make the deleted rows unrecoverable."""
        from ._tables import USER_TABLES

        validate_user_id(user_id)
        with self.transaction(user_id) as cur:
            for table in USER_TABLES:
                cur.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
        self._scrub_deleted()


def unlink_fact(cur: Cursor, user_id: str, fact_id: int) -> None:
    """Delete a fact; the facts it had replaced answer to its successor, or are current again.

    The data that overruled them is gone, so an older fact it superseded is
    what the user's remaining data says.
    """
    row = cur.execute("SELECT superseded_by FROM facts WHERE id = ? AND user_id = ?", (fact_id, user_id)).fetchone()
    if row is None:
        return
    successor = row[0]
    if successor is None:
        cur.execute(
            "UPDATE facts SET superseded_by = NULL, valid_to = NULL WHERE user_id = ? AND superseded_by = ?",
            (user_id, fact_id),
        )
    else:
        cur.execute(
            "UPDATE facts SET superseded_by = ? WHERE user_id = ? AND superseded_by = ?", (successor, user_id, fact_id)
        )
    cur.execute("DELETE FROM facts WHERE id = ? AND user_id = ?", (fact_id, user_id))


_WORD = re.compile(r"[^\W\d_]{5,}", re.UNICODE)


def _only_in(cur: Cursor, user_id: str, deleted: Sequence[str]) -> set[str]:
    """Words of the deleted chunks that no remaining chunk or fact of the user contains.

    A memory line holding one of them can only have come from the deleted
    items. Words are checked against the memory's own words first, so only a
    handful reach the database.
    """
    if not deleted:
        return set()
    memory_words: set[str] = set()
    for (text,) in cur.execute("SELECT text FROM memories WHERE user_id = ?", (user_id,)).fetchall():
        memory_words.update(w.lower() for w in _WORD.findall(text))
    candidates = {w.lower() for t in deleted for w in _WORD.findall(t)} & memory_words
    unique = set()
    for word in sorted(candidates):
        pattern = f"%{word}%"
        if cur.execute(
            "SELECT 1 FROM chunks WHERE user_id = ? AND LOWER(text) LIKE ? LIMIT 1", (user_id, pattern)
        ).fetchone() is None and cur.execute(
            "SELECT 1 FROM facts WHERE user_id = ? AND LOWER(text) LIKE ? LIMIT 1", (user_id, pattern)
        ).fetchone() is None:
            unique.add(word)
    return unique


def scrub_memory_lines(cur: Cursor, user_id: str, texts: Sequence[str], words: set[str] = frozenset()) -> int:
    """Remove, from every stored version of the user's memory, lines restating ``texts`` or holding ``words``.

    The memory is a document rewritten from facts and summaries; a line holding
    a deleted fact's words, or a word only the deleted items had, must not
    outlive them, in the latest version or in history.
    """
    needles = [" ".join(t.lower().split()) for t in texts if t and t.strip()]
    if not needles and not words:
        return 0

    def derived(line: str) -> bool:
        folded = " ".join(line.lower().split())
        return any(n in folded for n in needles) or any(w.lower() in words for w in _WORD.findall(line))

    changed = 0
    for version, text in cur.execute(
        "SELECT version, text FROM memories WHERE user_id = ?", (user_id,)
    ).fetchall():
        kept = [line for line in text.splitlines() if not derived(line)]
        if len(kept) != len(text.splitlines()):
            cur.execute("UPDATE memories SET text = ? WHERE user_id = ? AND version = ?",
                        ("\n".join(kept), user_id, version))
            changed += 1
    return changed
