"""The ingestion pipeline: loaded items -> chunks -> embeddings -> SQLite -> indexes.

Items are processed in batches. Each batch is written to SQLite in one
transaction (rows *and* embeddings), which is the moment a document is
acknowledged; the vector index is updated after the commit and is reconciled
from SQLite if the process dies in between, so a crash never leaves a chunk
searchable without its row or a row without its vector.

Loading and chunking overlap with embedding: a bounded producer thread pulls
items (for files, ``Personalizer._load_inputs`` reads them from disk here),
hashes and chunks them and queues whole batches, while the calling thread
embeds and commits the previous one. Embedding spends its time in ONNX Runtime
or torch, which release the GIL, so file parsing runs in the gaps instead of
after each batch. There is one producer and one FIFO queue, so batches are
committed in input order, exactly as without the thread; the queue holds at
most ``prefetch`` batches, so memory stays bounded however large the input.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .chunking import Chunker, index_text
from .embeddings import Embedder
from .storage import NewDocument, SQLStore, content_hash
from .types import FileError, IngestResult, LoadedItem

__all__ = ["Ingestor", "WrittenBatch"]

logger = logging.getLogger(__name__)

#: One batch as the producer hands it over: chunked documents, and how many
#: in-ingest duplicates were dropped while filling it.
_Batch = tuple[list[NewDocument], int]


@dataclass(frozen=True)
class WrittenBatch:
    """What one committed batch added, handed to the index updater."""

    user_id: str
    chunk_ids: np.ndarray
    vectors: np.ndarray
    version: int
    previous_version: int = 0
    removed_chunk_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class Ingestor:
    """Chunks, embeds and writes items for one user at a time.

    Args:
        store: the SQLite store.
        embedder: turns chunk texts into vectors.
        chunker: splits items into chunks.
        on_written: called after each committed batch (updates the vector index).
        batch_chunks: chunks embedded and committed together.
        prefetch: batches the producer thread may prepare ahead of the one being
            embedded (0 = no thread: load, chunk and embed in turn).
    """

    store: SQLStore
    embedder: Embedder
    chunker: Chunker
    on_written: Callable[[WrittenBatch], None]
    #: Held from each batch's commit until ``on_written`` returned (a search
    #: that keeps meeting half-applied writes waits on it once).
    write_gate: Any = field(default_factory=threading.RLock, repr=False)
    batch_chunks: int = 512
    prefetch: int = 2
    #: With ``progress=None`` a bar appears on a terminal only once an ingest
    #: has run this long: short ingests (one chat turn) stay silent.
    progress_delay_s: float = field(default=2.0, repr=False)
    #: Inputs this short (when their length is known) are chunked inline: one
    #: batch gains nothing from a thread, and a chat app adds turns one by one.
    _inline_below: int = field(default=32, repr=False)

    def ingest(
        self,
        user_id: str,
        items: Iterable[LoadedItem],
        errors: Iterable[FileError] = (),
        *,
        progress: bool | None = None,
        total: int | None = None,
        on_conflict: str = "replace",
        call: str | None = None,
    ) -> IngestResult:
        """Ingest ``items`` for ``user_id``; ``errors`` are loader failures to report.

        Args:
            user_id: whose data this is.
            items: loaded items, possibly a lazy generator that reads files (it is
                consumed on the producer thread, so its side effects, such as
                appending per-file errors to a list, happen there).
            errors: loader failures already known, reported with the result.
            progress: ``True`` shows a tqdm bar, ``False`` never does; ``None``
                shows one on a terminal once the ingest takes a while.
            total: number of items, when known (for the bar).
            on_conflict: ``"replace"``, ``"skip"`` or ``"error"`` for an item whose
                caller id the user already has (see ``Personalizer.add_documents``).
            call: the public call's id, recorded with what it wrote; versions
                written by the same call are never replaced by each other.

        Returns:
            What was added and what was skipped.

        Raises:
            Exception: whatever loading, chunking, embedding or writing raised;
                batches committed before the failure stay committed.
        """
        from tqdm.auto import tqdm

        if total is None and isinstance(items, Sequence):
            total = len(items)
        show = progress if progress is not None else sys.stderr.isatty()
        bar = tqdm(
            total=total, unit="doc", desc="ingest", disable=not show, leave=False,
            delay=0.0 if progress else self.progress_delay_s,
        )
        errors = list(errors)
        added_docs: list[int] = []
        chunks_added = 0
        duplicates = replaced = skipped = 0
        seen: set[str] = set()
        inline = self.prefetch <= 0 or (isinstance(items, Sequence) and len(items) < self._inline_below)
        batches = self._batches(items, seen)
        source: Iterator[_Batch] = batches if inline else _Prefetcher(batches, self.prefetch)
        try:
            for docs, in_batch_dups in source:
                duplicates += in_batch_dups
                bar.update(len(docs) + in_batch_dups)
                if not docs:
                    continue
                known = self.store.known_hashes(user_id, [d.digest for d in docs])
                fresh = [d for d in docs if d.digest not in known]
                duplicates += len(docs) - len(fresh)
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
                # The acknowledgement: rows and embeddings of the whole batch in one transaction.
                with self.write_gate:
                    result = self.store.add_documents(user_id, embedded, on_conflict=on_conflict, call=call)
                    if len(result.chunk_ids) or len(result.removed_chunk_ids):
                        self.on_written(WrittenBatch(
                            user_id, result.chunk_ids, result.vectors, result.version, result.previous_version,
                            result.removed_chunk_ids,
                        ))
                duplicates += result.duplicates
                replaced += result.replaced
                skipped += result.skipped
                added_docs.extend(result.document_ids)
                chunks_added += len(result.chunk_ids)
                bar.set_postfix(chunks=chunks_added, refresh=False)
        finally:
            if isinstance(source, _Prefetcher):
                # Stop and join the producer before returning, also on failure:
                # the caller reads the per-file errors the loader appended there.
                source.close()
            else:
                batches.close()
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
            replaced=replaced,
            skipped=skipped,
        )

    def _batches(self, items: Iterable[LoadedItem], seen: set[str]) -> Iterator[_Batch]:
        """Chunked documents in batches of about ``batch_chunks`` chunks, in-batch duplicates dropped.

        A document is never split across batches: its chunks are acknowledged together.
        """
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


_DONE = object()


class _Failure:
    """An exception raised on the producer thread, carried to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Prefetcher:
    """Runs a batch generator on a daemon thread, ``depth`` batches ahead of its consumer.

    Iterating yields the generator's batches in order; an exception raised by
    the generator is re-raised on the consumer thread (with its traceback) after
    the batches before it. :meth:`close` stops the producer, closes the
    generator on its own thread and joins it.
    """

    _POLL_S = 0.05

    def __init__(self, batches: Iterator[_Batch], depth: int) -> None:
        self._batches = batches
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="personalize-ingest-producer", daemon=True)
        self._thread.start()

    def _put(self, value: Any) -> bool:
        # A timed put so that a consumer that stopped early (an embedding
        # error) never leaves the producer blocked on a full queue.
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=self._POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for batch in self._batches:
                if not self._put(batch):
                    return
            self._put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the consumer
            self._put(_Failure(exc))
        finally:
            self._batches.close()  # runs the loaders' cleanup on the thread that ran them

    def __iter__(self) -> Iterator[_Batch]:
        while True:
            value = self._queue.get()
            if value is _DONE:
                return
            if isinstance(value, _Failure):
                raise value.exc
            yield value

    def close(self) -> None:
        """Stop the producer and wait for it (idempotent)."""
        self._stop.set()
        while self._thread.is_alive():
            try:  # make room in case it is blocked on put between polls
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=self._POLL_S)
