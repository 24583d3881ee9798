"""The ``Personalizer`` facade: one object per data directory.

It owns the store (SQLite, the truth), the derived indexes (vectors, BM25)
and keeps them in sync: each user's derived data records the store data
version it reflects, and is reconciled from SQLite whenever the two differ
(after a crash, or when another process wrote to the same directory).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._context_api import ContextMixin
from ._ids import validate_user_id
from ._knowledge_api import KnowledgeMixin
from .chunking import Chunker
from .embeddings import Embedder, QueryCache, backend_of, default_embedder
from .errors import ConfigError, IngestError, NotFoundError
from .ingest import Ingestor, WrittenBatch
from .lexical import LexicalIndex
from .loaders import LoaderLimits, SUPPORTED_SUFFIXES, iter_input_files, load_messages, load_path, load_text
from .retrieval import HybridRetriever, RetrievalConfig, SearchFilters
from .store import Store
from .types import FileError, Hit, IngestResult, LoadedItem

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
    """

    chunk_size: int = 200
    chunk_overlap: int = 30
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    loader_limits: LoaderLimits = field(default_factory=LoaderLimits)
    ann_threshold: int = 50_000  # indexes.faiss_index.DEFAULT_ANN_THRESHOLD, measured (docs/benchmarks.md)
    index_memory_cap_bytes: int = 2 * 1024**3


def _default_faiss(directory: Path, dim: int, config: PersonalizerConfig) -> Any:
    from personalize.indexes import FaissIndex

    return FaissIndex(
        directory / "vectors",
        dim,
        ann_threshold=config.ann_threshold,
        memory_cap_bytes=config.index_memory_cap_bytes,
    )


class Personalizer(KnowledgeMixin, ContextMixin):
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
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = config or PersonalizerConfig()
        self.embedder: Embedder = embedder or default_embedder()
        self.llm = llm
        self.store = Store(self.path / DB_FILE)
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
            self.store, self._dense_search, self.lexical, self.queries, self.config.retrieval
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
    ) -> Personalizer:
        """Open (or create) the data directory at ``path``.

        Args:
            path: the data directory.
            embedder: defaults to all-MiniLM-L6-v2 shipped on PyPI (offline).
            index: a ``VectorIndex``, or a factory ``(data_dir, dim) -> VectorIndex``;
                defaults to per-user FAISS shards in ``<path>/vectors``.
            llm: an ``LLM`` for summaries and persona extraction (``None``: the
                embedded extractive summarizer and rule-based extractor).
            config: other settings.
        """
        return cls(path, embedder=embedder, index=index, llm=llm, config=config)

    def __enter__(self) -> Personalizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Persist derived indexes and close the database (idempotent)."""
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
                    self._ingestor_instance = Ingestor(self.store, self.embedder, chunker, self._on_written)
        return self._ingestor_instance

    # ---------------------------------------------------------------- sync
    def _drop_orphans(self) -> None:
        """Remove derived data of users the store no longer has (a crash mid-forget)."""
        gone = self.index.delete_users_except(set(self.store.users()))
        if gone:
            logger.info("removed the vectors of %d users no longer in the store", gone)

    def _ensure_synced(self, user_id: str) -> None:
        """Reconcile the user's vectors with SQLite when their versions differ."""
        version = self.store.data_version(user_id)
        if self.index.synced_version(user_id) == version or (version == 0 and not self.store.has_user(user_id)):
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
            self.index.save()

    def _on_written(self, batch: WrittenBatch) -> None:
        with self._sync_lock:
            synced = self.index.synced_version(batch.user_id)
            if synced == batch.version - 1 or (synced is None and batch.version == 1):
                # The index was exactly one commit behind: apply this commit.
                self.index.add(batch.user_id, batch.chunk_ids, batch.vectors)
                self.index.mark_synced(batch.user_id, batch.version)
            else:  # someone else wrote in between: reconcile from the truth
                self._ensure_synced(batch.user_id)

    def _dense_search(
        self, user_id: str, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        self._ensure_synced(user_id)
        return self.index.search(user_id, query, k, allowed)

    # -------------------------------------------------------------- ingest
    def add_documents(
        self,
        user_id: str,
        inputs: str | os.PathLike[str] | Iterable[Any],
        *,
        ids: Sequence[str | None] | None = None,
        metadata: Mapping[str, Any] | None = None,
        progress: bool | None = None,
    ) -> IngestResult:
        """Ingest files, folders, strings or LlamaIndex ``Document`` objects for ``user_id``.

        A ``str`` is a path when it exists on disk, or when it has no whitespace
        and looks like a path (a separator or a supported suffix; reported as
        missing if absent); otherwise it is the text of a document.

        Args:
            user_id: whose data this is.
            inputs: one input or an iterable of them (paths, strings, LlamaIndex
                ``Document``s, :class:`LoadedItem`s). Folders are read recursively.
            ids: the caller's own id for each input (returned with every hit).
            metadata: merged into every input's metadata (returned with every hit).
            progress: show a progress bar (default: on a terminal, for long ingests).

        Returns:
            What was added, what was skipped as duplicate, and a clear error per
            input that could not be read (one bad file never aborts the batch).
        """
        validate_user_id(user_id)
        if isinstance(inputs, (str, os.PathLike)) or not isinstance(inputs, Iterable):
            inputs = [inputs]
        inputs = list(inputs)
        if ids is not None and len(ids) != len(inputs):
            raise ConfigError(f"got {len(ids)} ids for {len(inputs)} inputs")
        errors: list[FileError] = []
        items = self._load_inputs(inputs, ids, dict(metadata or {}), errors)
        result = self._ingestor.ingest(user_id, items, progress=progress)
        self.index.save()
        return _with_errors(result, errors)

    def add_messages(
        self,
        user_id: str,
        messages: Iterable[Mapping[str, Any]],
        *,
        session: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        progress: bool | None = None,
    ) -> IngestResult:
        """Ingest chat turns (``{"role", "content", "timestamp"?, "id"?, "name"?, "metadata"?}``).

        Turns keep their speaker, session and time, so retrieval can return a
        turn with its neighbours. An invalid turn is reported and skipped alone.
        """
        validate_user_id(user_id)
        items, errors = load_messages(list(messages), session=session, limits=self.config.loader_limits)
        if metadata:
            items = [_merge_metadata(item, metadata) for item in items]
        result = self._ingestor.ingest(user_id, items, progress=progress, total=len(items))
        self.index.save()
        return _with_errors(result, errors)

    def _load_inputs(
        self,
        inputs: list[Any],
        ids: Sequence[str | None] | None,
        metadata: dict[str, Any],
        errors: list[FileError],
    ) -> Iterator[LoadedItem]:
        limits = self.config.loader_limits
        for n, value in enumerate(inputs):
            external_id = ids[n] if ids is not None else None
            try:
                if isinstance(value, LoadedItem):
                    yield _merge_metadata(value, metadata, external_id)
                elif hasattr(value, "get_content") and hasattr(value, "metadata"):  # LlamaIndex Document
                    yield load_text(
                        value.get_content(),
                        source=str(value.metadata.get("file_path", "<llama_index>")),
                        external_id=external_id or getattr(value, "id_", None),
                        metadata={**dict(value.metadata), **metadata},
                        limits=limits,
                    )
                elif isinstance(value, os.PathLike) or (isinstance(value, str) and _looks_like_path(value)):
                    for path in iter_input_files([value]):
                        try:
                            for item in load_path(path, limits):
                                yield _merge_metadata(item, metadata, external_id)
                        except IngestError as exc:
                            errors.append(FileError(str(path), str(exc), getattr(exc, "kind", "unreadable")))
                elif isinstance(value, str):
                    yield load_text(value, external_id=external_id, metadata=metadata, limits=limits)
                else:
                    raise IngestError(f"input #{n} is a {type(value).__name__}; expected a path, str or Document")
            except IngestError as exc:
                errors.append(FileError(getattr(exc, "source", f"<input #{n}>"), str(exc), getattr(exc, "kind", "invalid")))

    # -------------------------------------------------------------- search
    def search(
        self,
        user_id: str,
        query: str,
        k: int = 5,
        *,
        sources: Sequence[str] | None = None,
        sessions: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        with_context: int = 0,
        mmr_lambda: float | None = None,
        recency_half_life_days: float | None = None,
    ) -> list[Hit]:
        """Hybrid (dense + BM25) search over ``user_id``'s data.

        Args:
            user_id: whose data to search (nobody else's is ever touched).
            query: the query text.
            k: how many hits.
            sources, sessions, kinds: keep only chunks from these sources
                (file paths), chat sessions, or kinds (``"document"``, ``"message"``).
            since, until: keep only items timestamped in ``[since, until)``.
            with_context: attach this many neighbouring chat turns to message hits.
            mmr_lambda: diversify with MMR (1.0 = relevance only).
            recency_half_life_days: favour recent items with this half-life.

        Returns:
            Hits, best first, each with score, chunk text, source and ids.
        """
        validate_user_id(user_id)
        if not isinstance(query, str):
            raise ConfigError("query must be a str")
        if not query.strip() or not self.store.has_user(user_id):
            return []
        filters = SearchFilters(sources=sources, sessions=sessions, kinds=kinds, since=since, until=until)
        return self.retriever.search(
            user_id,
            query,
            k,
            filters=filters,
            with_context=with_context,
            mmr_lambda=mmr_lambda,
            recency_half_life_days=recency_half_life_days,
        )

    # ------------------------------------------------------------- manage
    def users(self) -> list[str]:
        """Every user with data in this directory."""
        return self.store.users()

    def stats(self, user_id: str) -> dict[str, Any]:
        """Counts and time span of ``user_id``'s data."""
        validate_user_id(user_id)
        stats = self.store.stats(user_id)
        self._ensure_synced(user_id)
        stats["vectors"] = self.index.count(user_id)
        return stats

    def export(self, user_id: str) -> dict[str, Any]:
        """Everything held about ``user_id``, as JSON-serializable data.

        See docs/operations.md for the format.
        """
        validate_user_id(user_id)
        if not self.store.has_user(user_id):
            raise NotFoundError("unknown user (ids are case-sensitive)")
        from .export import export_user

        return export_user(self.store, user_id)

    def forget(self, user_id: str) -> None:
        """Delete every trace of ``user_id``: rows, vectors, BM25 files, summaries, facts."""
        validate_user_id(user_id)
        with self._sync_lock:
            # Store first: once its commit is done the user is gone for every
            # reader; leftover derived files are removed below or, after a
            # crash, by _drop_orphans on the next open.
            self.store.delete_user(user_id)
            self.index.delete_user(user_id)
            self.lexical.delete_user(user_id)
            refresher = self.__dict__.get("_refresher_obj")
            if refresher is not None:  # in-memory copies of the user's facts
                refresher.facts.forget_cache(user_id)
        logger.info("forgot one user")


def _looks_like_path(value: str) -> bool:
    if os.path.exists(value):
        return True
    if not value or len(value) > 4096 or any(ch.isspace() for ch in value):
        return False
    return os.sep in value or "/" in value or Path(value).suffix.lower() in SUPPORTED_SUFFIXES


def _merge_metadata(item: LoadedItem, metadata: Mapping[str, Any], external_id: str | None = None) -> LoadedItem:
    from dataclasses import replace

    if not metadata and external_id is None:
        return item
    return replace(
        item,
        metadata={**item.metadata, **metadata},
        external_id=external_id if external_id is not None else item.external_id,
    )


def _with_errors(result: IngestResult, errors: list[FileError]) -> IngestResult:
    from dataclasses import replace

    return replace(result, errors=tuple(errors) + result.errors) if errors else result
