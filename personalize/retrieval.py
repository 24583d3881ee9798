"""Hybrid retrieval: dense (vector index) + lexical (BM25), fused, optionally MMR and recency.

Fusion is a calibrated *score* combination, not reciprocal-rank fusion: RRF
gives a weak BM25 list as much say as a strong dense one, which on PrefEval
halves dense retrieval's hit rate. Each candidate gets
``(1 - w) * cosine + w * bm25 / best_bm25``. Lexical evidence helps a lot on
conversational memory (names, rare words: LoCoMo) but hurts when the query's
words match unrelated chatter and the relevant item shares none of them
(PrefEval); so a share of the top-k slots (``dense_share``) is reserved for
the best dense results, which bounds how far lexical noise can push a strong
semantic match out. ``w`` and ``dense_share`` were chosen on the development
data; docs/benchmarks.md has the sweep.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from .embeddings import QueryCache
from .errors import ConfigError
from .lexical import LexicalIndex, tokenize_query
from .store import Store
from .types import Hit

__all__ = ["HybridRetriever", "RetrievalConfig", "SearchFilters"]


@dataclass(frozen=True)
class RetrievalConfig:
    """How hybrid search ranks.

    Attributes:
        bm25_weight: weight of the normalized BM25 score (0 = dense only, 1 = BM25 only).
        dense_share: share of the top-k slots reserved for the best dense results
            (at least one slot when > 0; 0 = pure fused ranking).
        candidates: how many candidates each retriever contributes before fusion, at least.
        candidates_per_hit: and at least this many per hit asked for (a k=37 search
            fuses 74 dense and 74 BM25 candidates). On LoCoMo and PrefEval, 2 ranks
            exactly like 4 did, for less work (docs/performance.md).
        mmr_lambda: default MMR trade-off (``None`` = no MMR; 1.0 = relevance only).
        recency_half_life_days: default recency decay half-life (``None`` = off).
        recency_weight: share of the score subject to decay when recency is on.
    """

    bm25_weight: float = 0.3
    dense_share: float = 0.4
    candidates: int = 50
    candidates_per_hit: int = 2
    mmr_lambda: float | None = None
    recency_half_life_days: float | None = None
    recency_weight: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.bm25_weight <= 1.0:
            raise ConfigError("bm25_weight must be within [0, 1]")
        if not 0.0 <= self.dense_share <= 1.0:
            raise ConfigError("dense_share must be within [0, 1]")
        if self.candidates < 1 or self.candidates_per_hit < 1:
            raise ConfigError("candidates and candidates_per_hit must be >= 1")
        if self.mmr_lambda is not None and not 0.0 <= self.mmr_lambda <= 1.0:
            raise ConfigError("mmr_lambda must be within [0, 1]")
        if self.recency_half_life_days is not None and self.recency_half_life_days <= 0:
            raise ConfigError("recency_half_life_days must be > 0")
        if not 0.0 <= self.recency_weight <= 1.0:
            raise ConfigError("recency_weight must be within [0, 1]")


@dataclass(frozen=True)
class SearchFilters:
    """Restrict a search to some of the user's data (``None`` = no restriction)."""

    sources: Sequence[str] | None = None
    sessions: Sequence[str] | None = None
    kinds: Sequence[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    where: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return any(
            v is not None for v in (self.sources, self.sessions, self.kinds, self.since, self.until, self.where)
        )


class HybridRetriever:
    """Searches one user's chunks with dense and BM25 retrieval, fused.

    Args:
        store: the store (rows, embeddings, filters).
        dense_search: ``(user_id, query_vector, k, allowed_ids) -> (scores, ids)``.
        lexical: the BM25 indexes.
        queries: the query-embedding cache.
        config: ranking configuration.
        write_gate: held by this process's writers from commit until the indexes caught up.
        sync: ``(user_id, version)`` brings the vector index to that data version
            (version 0: the user is gone, drop every derived copy).
        local_vectors: ``(user_id, ids) -> (ids, vectors)``, embeddings the vector
            index holds on this host; the store is read for the rest.
    """

    def __init__(
        self,
        store: Store,
        dense_search: Callable[[str, np.ndarray, int, np.ndarray | None, int], tuple[np.ndarray, np.ndarray]],
        lexical: LexicalIndex,
        queries: QueryCache,
        config: RetrievalConfig = RetrievalConfig(),
        write_gate: Any = None,
        sync: Callable[[str, int], None] | None = None,
        local_vectors: Callable[[str, list[int]], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        self.store = store
        self._dense_search = dense_search
        self.lexical = lexical
        self.queries = queries
        self.config = config
        self._sync = sync
        self._local_vectors = local_vectors
        # Held by this process's writers from their commit until the indexes
        # caught up; a search that kept meeting concurrent writes takes it once.
        self._write_gate = write_gate if write_gate is not None else contextlib.nullcontext()

    def _lexical_source(self, user_id: str) -> tuple[np.ndarray, list[str]]:
        return self.store.chunk_index_texts(user_id)

    def search(
        self,
        user_id: str,
        query: str,
        k: int = 5,
        *,
        filters: SearchFilters = SearchFilters(),
        with_context: int = 0,
        mmr_lambda: float | None = None,
        recency_half_life_days: float | None = None,
        now: datetime | None = None,
        version: int | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks of ``user_id`` for ``query``, best first.

        ``version`` is the data version the caller expects: read from the store
        just now, or the version of this host's cached indexes, unread (each
        read is a round trip to a database server). Either way the winners'
        rows are read together with the user's current version, in one
        statement: if that differs, a write committed since (here or on another
        host) and the search runs again at the new version, so stale caches are
        caught by the read a search needs anyway. A user who is gone (version
        0) gets no hits and this host's copies are dropped.

        The indexes are read without a snapshot of the store, so a write that
        commits mid-search (an item replaced or deleted) can leave candidates
        whose rows are gone while their new versions are not yet indexed. Such
        a search also runs again; after a few runs it waits for this process's
        writers, so a reader sees the old version or the new one, never neither.
        """
        args = (user_id, query, k, filters, with_context, mmr_lambda, recency_half_life_days, now)
        for _ in range(3):
            hits, again = self._search_once(*args, version)
            if again is None:
                return hits
            version = again if again >= 0 else None
        with self._write_gate:
            return self._search_once(*args, None)[0]

    def _search_once(
        self,
        user_id: str,
        query: str,
        k: int,
        filters: SearchFilters,
        with_context: int,
        mmr_lambda: float | None,
        recency_half_life_days: float | None,
        now: datetime | None,
        version: int | None,
    ) -> tuple[list[Hit], int | None]:
        """One search at ``version``; and ``None``, or the version to search again at (-1: read it)."""
        if k <= 0:
            return [], None
        cfg = self.config
        if k > 64:
            # No more hits than the user has chunks: a large k must not size the
            # candidate pools (one count, skipped for the usual small k).
            k = min(k, self.store.chunk_count(user_id))
            if k <= 0:
                return [], None
        mmr_lambda = cfg.mmr_lambda if mmr_lambda is None else mmr_lambda
        half_life = cfg.recency_half_life_days if recency_half_life_days is None else recency_half_life_days
        allowed = self.store.filtered_chunk_ids(user_id, **filters.__dict__) if filters.active else None
        if allowed is not None and len(allowed) == 0:
            return [], None
        n_cand = max(cfg.candidates, cfg.candidates_per_hit * k)
        qvec = self.queries.embed_one(query)

        # Dense candidates.
        if version is None:
            version = self.store.data_version(user_id)
        if self._sync is not None:
            self._sync(user_id, version)
        if version == 0:
            return [], None
        d_scores, d_ids = self._dense_search(user_id, qvec[None, :], n_cand, allowed)
        dense: dict[int, float] = {int(i): float(s) for i, s in zip(d_ids[0], d_scores[0]) if i >= 0}

        # Lexical candidates (full score vector, so every candidate gets a BM25 score).
        bm25: dict[int, float] = {}
        best_bm25 = 0.0
        if cfg.bm25_weight > 0:
            entry = self.lexical.get(user_id, version, self._lexical_source)
            scores = LexicalIndex.scores(entry, tokenize_query(query))
            if len(scores):
                if allowed is not None:
                    scores = np.where(np.isin(entry.ids, allowed), scores, 0.0)
                best_bm25 = float(scores.max())
                if best_bm25 > 0:
                    top = np.argpartition(-scores, min(n_cand, len(scores) - 1))[:n_cand]
                    for j in top:
                        if scores[j] > 0:
                            bm25[int(entry.ids[j])] = float(scores[j])
                    # Dense candidates need their BM25 score too.
                    pos = np.searchsorted(entry.ids, np.fromiter(dense, np.int64, len(dense)))
                    for cid, p in zip(dense, pos):
                        if p < len(entry.ids) and entry.ids[p] == cid:
                            bm25.setdefault(cid, float(scores[p]))

        candidate_ids = list(dict.fromkeys([*dense, *bm25]))
        if not candidate_ids:
            # Nothing matched: the check below never runs, so a stale cache is caught here.
            current = self.store.data_version(user_id)
            return [], None if current == version else current
        # BM25-only candidates need their cosine, MMR every candidate's vector.
        diversify = mmr_lambda is not None and mmr_lambda < 1.0
        vectors = self.vectors(user_id, candidate_ids if diversify else [c for c in candidate_ids if c not in dense])
        for c, v in vectors.items():
            dense.setdefault(c, float(v @ qvec))

        w = cfg.bm25_weight
        fused: dict[int, float] = {}
        stale = False
        for cid in candidate_ids:
            if cid not in dense:  # no stored row: deleted since the index was read
                stale = True
                continue
            lexical = bm25.get(cid, 0.0) / best_bm25 if best_bm25 > 0 else 0.0
            fused[cid] = (1.0 - w) * dense[cid] + w * lexical
        if half_life is not None:
            fused = _apply_recency(fused, self.store.timestamps(user_id, list(fused)), half_life,
                                   cfg.recency_weight, now)

        ranked = sorted(fused, key=fused.__getitem__, reverse=True)
        if cfg.dense_share > 0 and w > 0:
            ranked = _reserve_dense_slots(ranked, dense, k, cfg.dense_share)
        if mmr_lambda is not None and mmr_lambda < 1.0:
            ranked = _mmr(ranked, fused, vectors, mmr_lambda, k)
        # Rows are read for the winners only, with the user's current version
        # (one statement). A moved version or a row that is gone (a concurrent
        # write) sends the search round again; nothing is ever half-visible.
        hits: list[Hit] = []
        moved: int | None = None
        start = 0
        while len(hits) < k and start < len(ranked):
            batch = ranked[start : start + k - len(hits) + 2]
            start += len(batch)
            chunks, current = self.store.chunks_at_version(user_id, batch)
            if current != version:
                moved = current
            for cid in batch:
                chunk = chunks.get(cid)
                if chunk is None:
                    stale = True
                    continue
                if len(hits) >= k:
                    continue
                context = self.store.session_neighbors(chunk, with_context) if with_context else ()
                hits.append(Hit(chunk=chunk, score=fused[cid], dense_score=dense.get(cid),
                                bm25_score=bm25.get(cid), context=context))
        if moved is not None:
            return hits, moved
        return hits, (-1 if stale else None)

    def vectors(self, user_id: str, ids: list[int]) -> dict[int, np.ndarray]:
        """Embeddings of ``ids``: from this host's vector index where it holds them, else the store."""
        if not ids:
            return {}
        out: dict[int, np.ndarray] = {}
        if self._local_vectors is not None:
            held, vecs = self._local_vectors(user_id, ids)
            out = {int(i): v for i, v in zip(held, vecs)}
        rest = [c for c in ids if c not in out]
        if rest:
            held, vecs = self.store.embeddings(user_id, rest)
            out.update((int(i), v) for i, v in zip(held, vecs))
        return out


def _reserve_dense_slots(ranked: list[int], dense: dict[int, float], k: int, share: float) -> list[int]:
    """The fused top ``k - m`` plus the best dense results until ``k``; best fused first.

    ``m = max(1, round(k * share))`` slots go to the dense ranking, filled after
    the fused picks so that items both rankings like are not counted twice.
    """
    m = max(1, round(k * share))
    chosen = ranked[: max(0, k - m)]
    taken = set(chosen)
    for cid in sorted((c for c in ranked if c in dense), key=dense.__getitem__, reverse=True):
        if len(chosen) >= k:
            break
        if cid not in taken:
            chosen.append(cid)
            taken.add(cid)
    position = {c: n for n, c in enumerate(ranked)}
    chosen.sort(key=position.__getitem__)
    return chosen + [c for c in ranked if c not in taken]


def _apply_recency(
    fused: dict[int, float],
    timestamps: dict[int, float | None],
    half_life_days: float,
    weight: float,
    now: datetime | None,
) -> dict[int, float]:
    now_ts = now.timestamp() if now is not None else time.time()
    out = {}
    for cid, score in fused.items():
        ts = timestamps.get(cid)
        if ts is None:
            out[cid] = score  # undated items are neither favoured nor penalized
            continue
        age_days = max(0.0, (now_ts - ts) / 86400.0)
        decay = math.pow(0.5, age_days / half_life_days)
        out[cid] = score * ((1.0 - weight) + weight * decay)
    return out


def _mmr(
    ranked: list[int], fused: dict[int, float], vectors: dict[int, np.ndarray], lam: float, k: int
) -> list[int]:
    """Maximal marginal relevance: trade relevance for novelty among the top candidates."""
    pool = [c for c in ranked if c in vectors]
    chosen: list[int] = []
    while pool and len(chosen) < k:
        best, best_val = pool[0], -math.inf
        for c in pool:
            redundancy = max((float(vectors[c] @ vectors[s]) for s in chosen), default=0.0)
            val = lam * fused[c] - (1.0 - lam) * redundancy
            if val > best_val:
                best, best_val = c, val
        chosen.append(best)
        pool.remove(best)
    return chosen + [c for c in ranked if c not in chosen]
