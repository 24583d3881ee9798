"""The ingestion pipeline: loaded items -> chunks -> embeddings -> SQLite -> indexes.

Items are processed in batches. Each batch is written to SQLite in one
transaction (rows *and* embeddings), which is the moment a document is
acknowledged; the vector index is updated after the commit and is reconciled
from SQLite if the process dies in between, so a crash never leaves a chunk
searchable without its row or a row without its vector.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .chunking import Chunker, index_text
from .embeddings import Embedder
from .store import NewDocument, Store, content_hash
from .types import FileError, IngestResult, LoadedItem

__all__ = ["Ingestor", "WrittenBatch"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WrittenBatch:
    """What one committed batch added, handed to the index updater."""

    user_id: str
    chunk_ids: np.ndarray
    vectors: np.ndarray
    version: int


@dataclass
class Ingestor:
    """Chunks, embeds and writes items for one user at a time.

    Args:
        store: the SQLite store.
        embedder: turns chunk texts into vectors.
        chunker: splits items into chunks.
        on_written: called after each committed batch (updates the vector index).
        batch_chunks: chunks embedded and committed together.
    """

    store: Store
    embedder: Embedder
    chunker: Chunker
    on_written: Callable[[WrittenBatch], None]
    batch_chunks: int = 512
    _progress_threshold: int = field(default=2000, repr=False)

    def ingest(
        self,
        user_id: str,
        items: Iterable[LoadedItem],
        errors: Iterable[FileError] = (),
        *,
        progress: bool | None = None,
        total: int | None = None,
    ) -> IngestResult:
        """Ingest ``items`` for ``user_id``; ``errors`` are loader failures to report."""
        from tqdm.auto import tqdm

        show = progress if progress is not None else (sys.stderr.isatty() and (total or 0) >= self._progress_threshold)
        bar = tqdm(total=total, unit="doc", desc="ingest", disable=not show, leave=False)
        errors = list(errors)
        added_docs: list[int] = []
        chunks_added = 0
        duplicates = 0
        seen: set[str] = set()
        try:
            for batch in self._batches(items, seen):
                docs, in_batch_dups = batch
                duplicates += in_batch_dups
                known = self.store.known_hashes(user_id, [d.digest for d in docs])
                fresh = [d for d in docs if d.digest not in known]
                duplicates += len(docs) - len(fresh)
                bar.update(len(docs) + in_batch_dups)
                if not fresh:
                    continue
                texts = [index_text(d.item, c) for d in fresh for c in d.chunks]
                vectors = self.embedder.embed(texts)
                offset = 0
                embedded = []
                for d in fresh:
                    n = len(d.chunks)
                    embedded.append(NewDocument(d.item, d.digest, d.chunks, vectors[offset : offset + n]))
                    offset += n
                result = self.store.add_documents(user_id, embedded)
                duplicates += result.duplicates
                added_docs.extend(result.document_ids)
                chunks_added += len(result.chunk_ids)
                if len(result.chunk_ids):
                    self.on_written(WrittenBatch(user_id, result.chunk_ids, result.vectors, result.version))
        finally:
            bar.close()
        logger.info(
            "ingested %d documents (%d chunks) for one user; %d duplicates, %d errors",
            len(added_docs), chunks_added, duplicates, len(errors),
        )
        return IngestResult(
            user_id=user_id,
            documents_added=len(added_docs),
            chunks_added=chunks_added,
            duplicates_skipped=duplicates,
            errors=tuple(errors),
            document_ids=tuple(added_docs),
        )

    def _batches(
        self, items: Iterable[LoadedItem], seen: set[str]
    ) -> Iterator[tuple[list[NewDocument], int]]:
        """Chunked documents in batches of about ``batch_chunks`` chunks, in-batch duplicates dropped."""
        docs: list[NewDocument] = []
        size = 0
        dups = 0
        empty = np.zeros((0, 0), np.float32)
        for item in items:
            digest = content_hash(item)
            if digest in seen:
                dups += 1
                continue
            seen.add(digest)
            chunks = self.chunker.split(item)
            if not chunks:
                continue
            docs.append(NewDocument(item, digest, chunks, empty))
            size += len(chunks)
            if size >= self.batch_chunks:
                yield docs, dups
                docs, size, dups = [], 0, 0
        if docs or dups:
            yield docs, dups
