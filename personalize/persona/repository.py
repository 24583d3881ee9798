"""Persona facts in SQLite: merging duplicates, superseding contradictions, keeping history.

A candidate meets the user's current facts in three ways:

- **duplicate** (same polarity and the same normalized text, or embedding
  cosine >= ``duplicate_threshold``, or the same object-keyed subject such as
  ``likes:hiking``): merged into the existing fact, whose sources grow; no new row.
- **contradiction** (same subject, or named in the candidate's ``supersedes``):
  the candidate becomes current; the old fact gets ``superseded_by`` and
  ``valid_to`` and stays in history.
- **older than the current fact on its subject** (both have timestamps and the
  candidate's is earlier: data ingested out of order): stored directly as
  history, superseded by the fact that is already current.

Fact embeddings are stored with the facts, so query-time matching
(:meth:`FactRepository.matches`) needs no model call beyond the query's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from ..embeddings import Embedder
from ..storage import from_epoch, load_json, to_epoch
from ..storage._writes import unlink_fact
from ..storage.base import SQLStore as Store
from ..types import Fact
from .base import FactCandidate
from ._live import Live, LiveFacts
from .lexicon import normalize_text

__all__ = ["MANUAL", "FactChanges", "FactRepository", "embedding_text", "is_slot"]

#: The generator of facts a user made or edited by hand: never pruned or
#: superseded by refresh, and they win over extracted facts they contradict.
MANUAL = "manual"

_COLUMNS = (
    "id, user_id, text, category, subject, confidence, sources, generator, valid_from, valid_to, "
    "superseded_by, created_at, polarity, embedding, quote"
)


@dataclass
class FactChanges:
    """What one :meth:`FactRepository.apply` did."""

    added: int = 0
    superseded: int = 0
    merged: int = 0
    ids: list[int] = field(default_factory=list)

    def __iadd__(self, other: FactChanges) -> FactChanges:
        self.added += other.added
        self.superseded += other.superseded
        self.merged += other.merged
        self.ids.extend(other.ids)
        return self


def is_slot(subject: str) -> bool:
    """Whether a subject is a slot whose value can change ("diet", "editor", "favorite:color").

    Other subjects name their object ("likes:hiking", "allergy:peanut"): a
    second statement of the same polarity on them restates the same fact, so it
    merges instead of superseding.
    """
    return ":" not in subject or subject.startswith(("favorite:", "my:", "goal:training"))


def embedding_text(subject: str, text: str) -> str:
    """The text a fact is embedded as: slot subjects lead ("diet: Eats fish now")."""
    if ":" not in subject and subject:
        return f"{subject.replace('_', ' ')}: {text}"
    return text


def _row_to_fact(row: Sequence) -> Fact:
    return Fact(
        id=row[0], user_id=row[1], text=row[2], category=row[3], subject=row[4],
        confidence=float(row[5]), sources=tuple(json.loads(row[6] or "[]")), generator=row[7],
        valid_from=from_epoch(row[8]), valid_to=from_epoch(row[9]), superseded_by=row[10],
        created_at=from_epoch(row[11]) or datetime.fromtimestamp(0), polarity=int(row[12]),
        quote=row[14],
    )


class FactRepository:
    """The ``facts`` table of one store.

    Args:
        store: the SQLite store.
        embedder: embeds fact texts (for duplicate detection and query matching).
        duplicate_threshold: cosine at or above which two facts of the same
            polarity are the same fact.
    """

    def __init__(self, store: Store, embedder: Embedder, *, duplicate_threshold: float = 0.92) -> None:
        self.store = store
        self.embedder = embedder
        self.duplicate_threshold = duplicate_threshold
        # Query-time matching reads every current fact of a user; keep the
        # decoded facts and their matrix per user, keyed by the user's fact stamp
        # (a row that SQLite triggers move on every write: writes by refresh,
        # forget or another process invalidate it with no bookkeeping at the
        # write sites, and checking it is one primary-key lookup).
        self._matrix_cache: OrderedDict[str, tuple[tuple[Any, ...], list[Fact], np.ndarray]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.max_cached_users = 256

    # ------------------------------------------------------------------ read
    def facts(self, user_id: str, *, history: bool = False) -> list[Fact]:
        """The user's current facts (``history=True``: every fact, superseded ones too), oldest first."""
        where = "" if history else " AND superseded_by IS NULL"
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM facts WHERE user_id = ?{where} "
            "ORDER BY COALESCE(valid_from, created_at), id",
            (user_id,), user_id=user_id,
        )
        return [_row_to_fact(r) for r in rows]

    def count(self, user_id: str) -> tuple[int, int]:
        """``(current, total)`` fact counts."""
        row = self.store.query(
            "SELECT SUM(CASE WHEN superseded_by IS NULL THEN 1 ELSE 0 END), COUNT(*) FROM facts WHERE user_id = ?",
            (user_id,), user_id=user_id,
        )[0]
        return int(row[0] or 0), int(row[1] or 0)

    def _stamp(self, user_id: str) -> tuple[Any, ...]:
        # Stamped by triggers on every write to the user's facts (_schema.py).
        return tuple(self.store.query("SELECT version FROM fact_versions WHERE user_id = ?", (user_id,),
                                     user_id=user_id))

    def current_matrix(self, user_id: str) -> tuple[list[Fact], np.ndarray]:
        """The user's current facts that have embeddings, and their ``(n, dim)`` matrix (cached)."""
        key = self._stamp(user_id)
        with self._cache_lock:
            hit = self._matrix_cache.get(user_id)
            if hit is not None and hit[0] == key:
                self._matrix_cache.move_to_end(user_id)
                return hit[1], hit[2]
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM facts WHERE user_id = ? AND superseded_by IS NULL "
            "AND embedding IS NOT NULL",
            (user_id,), user_id=user_id,
        )
        facts = [_row_to_fact(r) for r in rows]
        matrix = (
            np.frombuffer(b"".join(r[13] for r in rows), dtype=np.float32).reshape(len(rows), -1)
            if rows else np.zeros((0, 0), dtype=np.float32)
        )
        with self._cache_lock:
            self._matrix_cache[user_id] = (key, facts, matrix)
            self._matrix_cache.move_to_end(user_id)
            while len(self._matrix_cache) > self.max_cached_users:
                self._matrix_cache.popitem(last=False)
        return facts, matrix

    def forget_cache(self, user_id: str) -> None:
        """Drop the cached matrix of ``user_id`` (forget calls this)."""
        with self._cache_lock:
            self._matrix_cache.pop(user_id, None)

    def matches(self, user_id: str, query_vector: np.ndarray, k: int) -> list[tuple[Fact, float]]:
        """Current facts ranked by cosine similarity to ``query_vector``, best first."""
        if k <= 0:
            return []
        facts, vectors = self.current_matrix(user_id)
        if not facts:
            return []
        query = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        if vectors.shape[1] != query.shape[0]:
            return []
        scores = vectors @ query
        order = np.argsort(-scores, kind="stable")[:k]
        return [(facts[i], float(scores[i])) for i in order]

    # ----------------------------------------------------------------- write
    def embed(self, candidates: Sequence[FactCandidate]) -> np.ndarray:
        """Embeddings of the candidates (call outside the write transaction).

        The user's own words are embedded when known ("I switched to Helix"):
        queries are written by the same user, in the first person. A slot
        subject leads ("editor: ..."), so that a query about the slot ("which
        editor...") finds the fact even when its words do not name the slot.
        """
        return self.embedder.embed([embedding_text(c.subject, c.quote or c.text) for c in candidates])

    def apply(
        self,
        cur: Any,
        user_id: str,
        candidates: Sequence[FactCandidate],
        generator: str,
        vectors: np.ndarray | None = None,
        norms: dict[str, str] | None = None,
    ) -> FactChanges:
        """Merge, supersede or insert each candidate, in time order, inside ``cur``'s transaction.

        Args:
            cur: a cursor of an open write transaction (``store.transaction()``).
            user_id: whose facts.
            candidates: the new candidates.
            generator: ``"rules"`` or the model name.
            vectors: the candidates' embeddings, aligned (from :meth:`embed`).
            norms: normalized fact texts by text, kept by the caller across the
                batches of one refresh (each batch re-reads every current fact);
                a dict the caller drops afterwards, so no user text outlives it.

        Returns:
            Counts of added, superseded and merged facts.
        """
        changes = FactChanges()
        if not candidates:
            return changes
        norms = {} if norms is None else norms
        live = self._live(cur, user_id, norms)
        order = sorted(
            range(len(candidates)),
            key=lambda i: (to_epoch(candidates[i].valid_from) or float("-inf"), min(candidates[i].sources or (0,)), i),
        )
        now = time.time()
        for i in order:
            cand = candidates[i]
            vector = None if vectors is None else np.asarray(vectors[i], dtype=np.float32)
            norm = normalize_text(cand.text)
            start = to_epoch(cand.valid_from)
            dup = live.duplicate(cand.polarity, norm, cand.subject, not is_slot(cand.subject), vector,
                                 self.duplicate_threshold)
            if dup is not None:
                dup.sources = sorted(set(dup.sources) | set(cand.sources))
                dup.confidence = max(dup.confidence, cand.confidence)
                if start is not None and (dup.valid_from is None or start < dup.valid_from):
                    dup.valid_from = start
                cur.execute(
                    "UPDATE facts SET sources = ?, confidence = ?, valid_from = ? WHERE id = ?",
                    (json.dumps(dup.sources), dup.confidence, dup.valid_from, dup.id),
                )
                changes.merged += 1
                continue
            wanted = set(cand.supersedes)
            conflicts = live.with_subject(cand.subject)
            same = {f.id for f in conflicts}
            conflicts += [f for f in map(live.get, sorted(wanted - same)) if f is not None]
            newer = [f for f in conflicts if start is not None and f.valid_from is not None and f.valid_from > start]
            # A fact the user made or edited by hand wins over extracted ones it
            # contradicts, whatever their dates: the extracted one goes to history.
            newer += [f for f in conflicts if f.manual and f not in newer]
            if newer:
                # Said before what is already current: history only (once: re-reading
                # the same data merges into the history row it made the first time).
                past = self._history_duplicate(cur, user_id, cand, norm, norms)
                if past is not None:
                    past_id, past_sources = past
                    cur.execute("UPDATE facts SET sources = ? WHERE id = ?",
                                (json.dumps(sorted(set(past_sources) | set(cand.sources))), past_id))
                    changes.merged += 1
                    continue
                winner = max(newer, key=lambda f: (f.manual, f.valid_from or 0.0, f.id))
                new_id = self._insert(cur, user_id, cand, generator, vector, now, winner.id, winner.valid_from)
                changes.added += 1
                changes.ids.append(new_id)
                continue
            new_id = self._insert(cur, user_id, cand, generator, vector, now, None, None)
            changes.added += 1
            changes.ids.append(new_id)
            for old in conflicts:
                cur.execute(
                    "UPDATE facts SET superseded_by = ?, valid_to = ? WHERE id = ?",
                    (new_id, start if start is not None else now, old.id),
                )
                live.remove(old)
                changes.superseded += 1
            live.append(Live(new_id, cand.subject, cand.polarity, norm, vector, start,
                             sorted(set(cand.sources)), cand.confidence))
        return changes

    def prune_deleted(self, cur: Any, user_id: str, live_chunks: Mapping[int, str]) -> int:
        """Drop deleted chunks from fact sources; delete facts left with no source.

        A fact drawn only from data the user deleted must not outlive that data.
        Since SQLite can give a deleted chunk's id to a new chunk, a source also
        counts as gone when the fact's quote (the user's words, when the
        extractor kept them) is no longer in that chunk's text.

        Args:
            cur: a cursor of an open write transaction.
            user_id: whose facts.
            live_chunks: ``{chunk id: text}`` of the user's chunks now.

        Returns:
            How many facts were deleted.
        """
        deleted = 0
        words: dict[int, set[str]] = {}

        def supports(chunk_id: int, quote: str | None) -> bool:
            if chunk_id not in live_chunks:
                return False
            if not quote:
                return True
            if chunk_id not in words:
                words[chunk_id] = set(normalize_text(live_chunks[chunk_id]).split())
            return set(normalize_text(quote).split()) <= words[chunk_id]

        for fact_id, sources, quote, generator in cur.execute(
            "SELECT id, sources, quote, generator FROM facts WHERE user_id = ? ORDER BY id DESC", (user_id,)
        ).fetchall():
            ids = json.loads(sources or "[]")
            kept = [i for i in ids if supports(i, quote)]
            if len(kept) == len(ids):
                continue
            if not kept and generator != MANUAL:
                # Its successor is read inside, not before the loop: deleting a
                # newer fact re-links this one.
                unlink_fact(cur, user_id, int(fact_id))
                deleted += 1
            else:
                cur.execute("UPDATE facts SET sources = ? WHERE id = ?", (json.dumps(kept), fact_id))
        return deleted

    # ---------------------------------------------------------------- manual
    def add_manual(
        self, user_id: str, text: str, *, category: str, subject: str, replaces: int | None = None,
        valid_from: datetime | None = None,
    ) -> Fact:
        """Store a fact the user made by hand; it supersedes current facts of its subject.

        ``replaces`` names the fact it edits: that one is superseded too, whatever its subject.
        """
        vector = self.embedder.embed([embedding_text(subject, text)])[0]
        cand = FactCandidate(text=text, category=category, subject=subject, confidence=1.0,
                             valid_from=valid_from, supersedes=(replaces,) if replaces is not None else ())
        now = time.time()
        with self.store.transaction(user_id) as cur:
            self.store._lock_user(cur, user_id)
            if replaces is not None and cur.execute(
                "SELECT 1 FROM facts WHERE id = ? AND user_id = ? AND superseded_by IS NULL", (replaces, user_id)
            ).fetchone() is None:
                from ..errors import NotFoundError

                raise NotFoundError("no such current fact for this user")
            new_id = self._insert(cur, user_id, cand, MANUAL, vector, now, None, None)
            olds = [r[0] for r in cur.execute(
                "SELECT id FROM facts WHERE user_id = ? AND superseded_by IS NULL AND id <> ? "
                "AND (subject = ? OR id = ?)", (user_id, new_id, subject, replaces if replaces is not None else -1),
            ).fetchall()]
            for old in olds:
                cur.execute("UPDATE facts SET superseded_by = ?, valid_to = ? WHERE id = ?",
                            (new_id, to_epoch(valid_from) or now, old))
            self.store.record(cur, user_id, "edit_fact" if replaces is not None else "add_fact",
                              _call(), "facts", {"fact": new_id, "superseded": olds})
        self.forget_cache(user_id)
        return next(f for f in self.facts(user_id) if f.id == new_id)

    def delete_fact(self, user_id: str, fact_id: int) -> None:
        """Delete one fact (current or historical); facts it had replaced answer to its successor."""
        from ..errors import NotFoundError
        from ..storage._writes import scrub_memory_lines

        with self.store.transaction(user_id) as cur:
            self.store._lock_user(cur, user_id)
            row = cur.execute("SELECT text FROM facts WHERE id = ? AND user_id = ?", (fact_id, user_id)).fetchone()
            if row is None:
                raise NotFoundError("no such fact for this user")
            unlink_fact(cur, user_id, int(fact_id))
            scrub_memory_lines(cur, user_id, [row[0]])
            self.store.record(cur, user_id, "delete_fact", _call(), "facts", {"fact": int(fact_id)})
        self.forget_cache(user_id)
        self.store._scrub_deleted()

    # ------------------------------------------------------------- internals
    def _live(self, cur: Any, user_id: str, norms: dict[str, str]) -> LiveFacts:
        out = LiveFacts()
        normalized = _memo(norms)
        for fid, text, subject, polarity, embedding, valid_from, sources, confidence, generator in cur.execute(
            "SELECT id, text, subject, polarity, embedding, valid_from, sources, confidence, generator FROM facts "
            "WHERE user_id = ? AND superseded_by IS NULL ORDER BY id",
            (user_id,),
        ).fetchall():
            vector = np.frombuffer(embedding, dtype=np.float32) if embedding else None
            out.append(Live(fid, subject, int(polarity), normalized(text), vector, valid_from,
                             json.loads(sources or "[]"), float(confidence), generator == MANUAL))
        return out

    @staticmethod
    def _history_duplicate(
        cur: Any, user_id: str, cand: FactCandidate, norm: str, norms: dict[str, str]
    ) -> tuple[int, list[int]] | None:
        normalized = _memo(norms)
        for fid, text, sources in cur.execute(
            "SELECT id, text, sources FROM facts WHERE user_id = ? AND subject = ? AND polarity = ? "
            "AND superseded_by IS NOT NULL",
            (user_id, cand.subject, cand.polarity),
        ).fetchall():
            if normalized(text) == norm:
                return int(fid), json.loads(sources or "[]")
        return None

    @staticmethod
    def _insert(
        cur: Any,
        user_id: str,
        cand: FactCandidate,
        generator: str,
        vector: np.ndarray | None,
        now: float,
        superseded_by: int | None,
        valid_to: float | None,
    ) -> int:
        cur.execute(
            "INSERT INTO facts (user_id, text, category, subject, polarity, confidence, sources, generator, "
            "valid_from, valid_to, superseded_by, embedding, created_at, quote) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                user_id, cand.text, cand.category, cand.subject, cand.polarity, cand.confidence,
                json.dumps(sorted(set(cand.sources))), generator, to_epoch(cand.valid_from), valid_to,
                superseded_by, None if vector is None else vector.tobytes(), now, cand.quote,
            ),
        )
        return int(cur.fetchone()[0])


def _memo(norms: dict[str, str]) -> Callable[[str], str]:
    """:func:`normalize_text` through ``norms``, the caller's text -> normalized text dict."""

    def normalized(text: str) -> str:
        norm = norms.get(text)
        if norm is None:
            norm = norms[text] = normalize_text(text)
        return norm

    return normalized


def _call() -> str:
    from ..storage import new_call_id

    return new_call_id()

