"""The ``Personalizer`` facade: one object per store.

It owns the store (the truth: SQLite in a data directory, or PostgreSQL), the
derived indexes (vectors, BM25) and keeps them in sync: each user's derived
data records the store data version it reflects, and is reconciled from the
store whenever the two differ (after a crash, or when another process or host
wrote). Versions come from a global tick and never repeat, so a cache of a
forgotten user can never pass for the user written again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._async_api import AsyncMixin
from ._context_api import ContextMixin
from ._ids import validate_user_id
from ._ingest_api import IngestMixin
from ._items_api import ItemsMixin
from ._knowledge_api import KnowledgeMixin
from ._validate import (
    MAX_K,
    MAX_QUERY_CHARS,
    as_datetime,
    as_k,
    as_optional_float,
    as_query,
    as_str_list,
    as_where,
)
from .chunking import Chunker
from .embeddings import Embedder, QueryCache, backend_of, default_embedder
from .errors import ConfigError, NotFoundError
from .ingest import Ingestor, WrittenBatch
from .indexes.base import HoldsVectors
from .lexical import LexicalIndex
from .loaders import LoaderLimits
from .retrieval import HybridRetriever, RetrievalConfig, SearchFilters
from .storage import SQLStore, is_database_url, open_store
from .types import Hit

__all__ = ["Personalizer", "PersonalizerConfig"]

logger = logging.getLogger(__name__)

DB_FILE = "personalize.sqlite3"
IndexFactory = Callable[[Path, int], Any]


@dataclass(frozen=True)
class PersonalizerConfig:
    """Settings of a :class:`Personalizer` (all optional).

    Attributes:
        chunk_size: maximum tokens per chunk.
        chunk_overlap: tokens shared by consecutive chunks of a document.
        retrieval: hybrid retrieval settings.
        loader_limits: size limits applied to inputs.
        ann_threshold: FAISS shards above this many vectors use IVF.
        index_memory_cap_bytes: FAISS shards in memory are evicted past this.
        max_k: the most hits one search may ask for (also capped by the user's chunk count).
        max_query_chars: queries are cut to this many characters (the embedder
            reads about 1,000; BM25 gains nothing from more).
    """

    chunk_size: int = 200
    chunk_overlap: int = 30
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    loader_limits: LoaderLimits = field(default_factory=LoaderLimits)
    ann_threshold: int = 50_000  # indexes.faiss_index.DEFAULT_ANN_THRESHOLD, measured (docs/benchmarks.md)
    index_memory_cap_bytes: int = 2 * 1024**3
    max_k: int = MAX_K
    max_query_chars: int = MAX_QUERY_CHARS

    def __post_init__(self) -> None:
        for name in ("chunk_size", "max_k", "max_query_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"PersonalizerConfig.{name} must be an int >= 1")


def _default_faiss(directory: Path, dim: int, config: PersonalizerConfig) -> Any:
    from personalize.indexes import FaissIndex

    return FaissIndex(
        directory / "vectors",
        dim,
        ann_threshold=config.ann_threshold,
        memory_cap_bytes=config.index_memory_cap_bytes,
    )


def _default_cache_dir(url: str) -> Path:
    """Where a host keeps its derived caches of a PostgreSQL store (one folder per database)."""
    root = Path(os.environ.get("PERSONALIZE_CACHE_DIR", "~/.cache/personalize")).expanduser()
    return root / hashlib.sha256(url.encode()).hexdigest()[:16]


class Personalizer(IngestMixin, ItemsMixin, KnowledgeMixin, ContextMixin, AsyncMixin):
    """Per-user personal knowledge for RAG applications.

    Create one with :meth:`open`; it is safe to share between threads.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        embedder: Embedder | None = None,
        index: Any = None,
        llm: Any = None,
        config: PersonalizerConfig | None = None,
        store: SQLStore | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if store is None and is_database_url(path):
            store = open_store(str(path))
        if store is not None:
            # The truth is a shared database; this host keeps its derived caches here.
            url = str(path) if is_database_url(path) else str(getattr(store, "dsn", path))
            self.path = Path(cache_dir) if cache_dir is not None else (
                Path(path) if not is_database_url(path) else _default_cache_dir(url))
        else:
            self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = config or PersonalizerConfig()
        self.embedder: Embedder = embedder or default_embedder()
        self.llm = llm
        self.store: SQLStore = store if store is not None else open_store(self.path / DB_FILE)
        self.store.check_embedder(self.embedder.name, self.embedder.dim, backend_of(self.embedder))
        if index is None:
            self.index = _default_faiss(self.path, self.embedder.dim, self.config)
        elif callable(index) and not hasattr(index, "search"):
            self.index = index(self.path, self.embedder.dim)
        else:
            self.index = index
        if getattr(self.index, "dim", self.embedder.dim) != self.embedder.dim:
            raise ConfigError(f"index dimension {self.index.dim} != embedder dimension {self.embedder.dim}")
        self.lexical = LexicalIndex(self.path / "bm25")
        self.queries = QueryCache(self.embedder)
        self._sync_lock = threading.RLock()
        self._closed = False
        self._ingestor_instance: Ingestor | None = None
        self.retriever = HybridRetriever(
            self.store, self._dense_search, self.lexical, self.queries, self.config.retrieval,
            write_gate=self._sync_lock, sync=self._ensure_synced,
            local_vectors=self.index.vectors if isinstance(self.index, HoldsVectors) else None,
        )
        self._drop_orphans()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        embedder: Embedder | None = None,
        index: Any = None,
        llm: Any = None,
        config: PersonalizerConfig | None = None,
        store: SQLStore | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> Personalizer:
        """Open (or create) a store: a data directory, or a ``postgresql://`` database.

        Args:
            path: the data directory (SQLite, the embedded default), or a
                ``postgresql://user:password@host/db`` URL (several app hosts;
                needs the ``postgres`` extra).
            embedder: defaults to all-MiniLM-L6-v2 shipped on PyPI (offline).
            index: a ``VectorIndex``, or a factory ``(cache_dir, dim) -> VectorIndex``;
                defaults to per-user FAISS shards in ``<cache dir>/vectors``.
            llm: an ``LLM`` for summaries and persona extraction (``None``: the
                embedded extractive summarizer and rule-based extractor).
            config: other settings.
            store: an already opened store (e.g. ``PostgresStore(dsn, ...)``).
            cache_dir: with a database, where this host keeps its derived caches
                (default: ``$PERSONALIZE_CACHE_DIR`` or ``~/.cache/personalize``,
                one folder per database).
        """
        return cls(path, embedder=embedder, index=index, llm=llm, config=config, store=store, cache_dir=cache_dir)

    def __enter__(self) -> Personalizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Persist derived indexes and close the store (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._close_graph_threads()
        self.index.close()
        self.store.close()

    @property
    def _ingestor(self) -> Ingestor:
        # Built on first ingest: the chunker imports LlamaIndex (seconds), which
        # a process that only searches never needs.
        if self._ingestor_instance is None:
            with self._sync_lock:
                if self._ingestor_instance is None:
                    chunker = Chunker(self.config.chunk_size, self.config.chunk_overlap)
                    self._ingestor_instance = Ingestor(self.store, self.embedder, chunker, self._on_written,
                                                      write_gate=self._sync_lock)
        return self._ingestor_instance

    # ---------------------------------------------------------------- sync
    def _drop_orphans(self) -> None:
        """Remove derived data of users the store no longer has (a crash or a race mid-forget)."""
        keep = set(self.store.users())
        gone = self.index.delete_users_except(keep)
        gone += self.lexical.delete_users_except(keep)
        if gone:
            logger.info("removed the derived files of %d users no longer in the store", gone)

    def _purge_derived(self, user_id: str) -> None:
        """Drop every derived copy of ``user_id`` held by this process: vectors, BM25, cached facts."""
        with self._sync_lock:
            self.index.delete_user(user_id)
            self.lexical.delete_user(user_id)
            refresher = self.__dict__.get("_refresher_obj")
            if refresher is not None:  # in-memory copies of the user's facts
                refresher.facts.forget_cache(user_id)

    def _ensure_synced(self, user_id: str, version: int | None = None) -> None:
        """Reconcile the user's vectors with the store when their versions differ.

        A user the store no longer has (forgotten here, or by another process
        or host) has every derived copy on this host removed at this access.
        ``version`` is the store's data version when the caller just read it.
        """
        if version is None:
            version = self.store.data_version(user_id)
        if self.index.synced_version(user_id) == version:
            return
        if version == 0 and not self.store.has_user(user_id):
            # (The lexical folder too: with a shared index such as pgvector the
            # forgetting host already emptied the index, but not our BM25 files.)
            if self.index.has_user(user_id) or self.lexical._folder(user_id).exists():
                self._purge_derived(user_id)
            return
        with self._sync_lock:
            version = self.store.data_version(user_id)
            if self.index.synced_version(user_id) == version:
                return
            truth = self.store.chunk_ids(user_id)
            held = self.index.ids(user_id)
            extra = np.setdiff1d(held, truth, assume_unique=False)
            missing = np.setdiff1d(truth, held, assume_unique=False)
            if len(extra):
                self.index.delete(user_id, extra)
            if len(missing):
                for start in range(0, len(missing), 20_000):
                    ids, vectors = self.store.embeddings(user_id, missing[start : start + 20_000])
                    self.index.add(user_id, ids, vectors)
            if len(extra) or len(missing):
                logger.info("reconciled one user's vectors: +%d -%d", len(missing), len(extra))
            self.index.mark_synced(user_id, version)
            self._save_index(user_id)

    def _on_written(self, batch: WrittenBatch) -> None:
        with self._sync_lock:
            synced = self.index.synced_version(batch.user_id)
            if synced == batch.previous_version or (synced is None and batch.previous_version == 0):
                # The index was exactly one commit behind: apply this commit. New
                # versions go in before the replaced ones go out, so a concurrent
                # search finds one of them (a replaced row reads as gone and the
                # search runs again), never neither.
                if len(batch.chunk_ids):
                    self.index.add(batch.user_id, batch.chunk_ids, batch.vectors)
                if len(batch.removed_chunk_ids):
                    self.index.delete(batch.user_id, batch.removed_chunk_ids)
                self.index.mark_synced(batch.user_id, batch.version)
            else:  # someone else wrote in between, or an older incarnation: reconcile from the truth
                self._ensure_synced(batch.user_id)

    def _save_index(self, user_id: str | None = None) -> None:
        """Persist changed vectors; if ``user_id`` was forgotten meanwhile, remove what we just wrote.

        A forget in another process can land between our commit and our file
        writes; the loser of that race cleans up after itself.
        """
        for attempt in range(3):
            try:
                self.index.save()
                break
            except FileNotFoundError:
                # Another process removed the user's folder under our write (a
                # forget): the data is gone, or we write it again into a new folder.
                if user_id is not None and not self.store.has_user(user_id):
                    break
                if attempt == 2:
                    raise
        if user_id is not None and not self.store.has_user(user_id):
            self._purge_derived(user_id)

    def _dense_search(
        self, user_id: str, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(user_id, query, k, allowed)

    # -------------------------------------------------------------- search
    def search(
        self,
        user_id: str,
        query: str,
        k: int = 5,
        *,
        sources: str | Sequence[str] | None = None,
        sessions: str | Sequence[str] | None = None,
        kinds: str | Sequence[str] | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        where: dict[str, Any] | None = None,
        with_context: int = 0,
        mmr_lambda: float | None = None,
        recency_half_life_days: float | None = None,
    ) -> list[Hit]:
        """Hybrid (dense + BM25) search over ``user_id``'s data.

        Args:
            user_id: whose data to search (nobody else's is ever touched).
            query: the query text (cut to ``config.max_query_chars``).
            k: how many hits (1 to ``config.max_k``; fewer when the user has fewer chunks).
            sources, sessions, kinds: keep only chunks from these sources
                (file paths), chat sessions, or kinds (``"document"``, ``"message"``);
                a bare string is one value.
            since, until: keep only items timestamped in ``[since, until)``
                (``datetime`` or ISO-8601 string).
            where: a metadata filter, e.g. ``{"project": "x", "year": {"$gte": 2024}}``.
            with_context: attach this many neighbouring chat turns to message hits.
            mmr_lambda: diversify with MMR (1.0 = relevance only).
            recency_half_life_days: favour recent items with this half-life.

        Returns:
            Hits, best first, each with score, chunk text, source, kind, timestamp and ids.

        Raises:
            ConfigError: an argument is invalid (the message names it).
        """
        validate_user_id(user_id)
        query = as_query(query, max_chars=self.config.max_query_chars)
        k = as_k(k, maximum=self.config.max_k)
        filters = self._filters(sources, sessions, kinds, since, until, where)
        if isinstance(with_context, bool) or not isinstance(with_context, int) or not 0 <= with_context <= 50:
            raise ConfigError("with_context must be an int from 0 to 50")
        mmr = as_optional_float(mmr_lambda, "mmr_lambda", positive=False)
        if mmr is not None and not 0.0 <= mmr <= 1.0:
            raise ConfigError("mmr_lambda must be between 0 and 1")
        half_life = as_optional_float(recency_half_life_days, "recency_half_life_days")
        if not query.strip():
            return []
        # Each read is a round trip to a database server. With this host's
        # indexes of the user in memory, their version is searched unread: the
        # retriever checks it with the hits' rows and searches again if a write
        # moved it. Otherwise one read answers "does the user have data" and
        # "which version"; a user with no data, or forgotten by another host,
        # has version 0 and this host's copies are dropped now.
        version = self.lexical.loaded_version(user_id)
        if version is None:
            version = self.store.data_version(user_id)
            if version == 0:
                self._ensure_synced(user_id, 0)
                return []
        return self.retriever.search(
            user_id,
            query,
            k,
            filters=filters,
            with_context=with_context,
            mmr_lambda=mmr,
            recency_half_life_days=half_life,
            version=version,
        )

    @staticmethod
    def _filters(
        sources: object, sessions: object, kinds: object, since: object, until: object, where: object
    ) -> SearchFilters:
        """Search filters through the one validation path."""
        kind_list = as_str_list(kinds, "kinds")
        if kind_list is not None and not set(kind_list) <= {"document", "message"}:
            raise ConfigError("kinds may only hold 'document' and 'message'")
        return SearchFilters(
            sources=as_str_list(sources, "sources"),
            sessions=as_str_list(sessions, "sessions"),
            kinds=kind_list,
            since=as_datetime(since, "since"),
            until=as_datetime(until, "until"),
            where=as_where(where),
        )

    # ------------------------------------------------------------- manage
    def users(self) -> list[str]:
        """Every user with data in this store."""
        return self.store.users()

    def stats(self, user_id: str) -> dict[str, Any]:
        """Counts and time span of ``user_id``'s data."""
        validate_user_id(user_id)
        stats = self.store.stats(user_id)
        self._ensure_synced(user_id)
        stats["vectors"] = self.index.count(user_id)
        return stats

    def export(self, user_id: str) -> dict[str, Any]:
        """Everything held about ``user_id``, history included, as JSON-serializable data.

        See docs/operations.md for the format.
        """
        validate_user_id(user_id)
        if not self.store.has_user(user_id):
            raise NotFoundError("unknown user (ids are case-sensitive)")
        from .export import export_user

        return export_user(self.store, user_id)

    def forget(self, user_id: str) -> None:
        """Delete every trace of ``user_id``: rows, vectors, BM25 files, summaries, facts, history.

        Idempotent: forgetting an unknown user removes any derived files left
        under that id and succeeds.
        """
        validate_user_id(user_id)
        with self._sync_lock:
            # Store first: once its commit is done the user is gone for every
            # reader; leftover derived files are removed below or, after a
            # crash, by _drop_orphans on the next open (on another host: at
            # that host's next access of the user).
            self.store.delete_user(user_id)
            self._purge_derived(user_id)
        logger.info("forgot one user")
