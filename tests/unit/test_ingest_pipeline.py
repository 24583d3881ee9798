"""The ingest pipeline: overlapped loading/chunking keeps order, acknowledgement and errors."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from personalize import Personalizer
from personalize.ingest import Ingestor, WrittenBatch
from personalize.types import LoadedItem

PRODUCER = "personalize-ingest-producer"


def _messages(n: int, prefix: str = "turn") -> list[LoadedItem]:
    return [LoadedItem(text=f"{prefix} {i}: I walked my dog number {i} today", kind="message",
                       session="s", role="user", external_id=str(i)) for i in range(n)]


def _lazy(items: Sequence[LoadedItem], log: list[tuple[str, int]] | None = None) -> Iterator[LoadedItem]:
    """A generator (not a Sequence), so the ingestor uses its producer thread."""
    for n, item in enumerate(items):
        if log is not None:
            log.append(("load", n))
        yield item


class _Recording:
    """Wraps the real embedder: records calls, optionally sleeps or fails on the n-th batch."""

    def __init__(self, inner, *, sleep_s: float = 0.0, fail_on: int | None = None,
                 log: list[tuple[str, int]] | None = None) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.backend = getattr(inner, "backend", None)
        self.sleep_s, self.fail_on, self.log = sleep_s, fail_on, log
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        if self.fail_on is not None and self.calls == self.fail_on:
            raise RuntimeError("embedding backend crashed")
        if self.log is not None:
            self.log.append(("embed-start", self.calls))
        out = self.inner.embed(texts)
        time.sleep(self.sleep_s)
        if self.log is not None:
            self.log.append(("embed-end", self.calls))
        return out


def _ingestor(p: Personalizer, **changes) -> tuple[Ingestor, list[WrittenBatch]]:
    written: list[WrittenBatch] = []

    def on_written(batch: WrittenBatch) -> None:
        written.append(batch)
        p._on_written(batch)

    ingestor = dataclasses.replace(p._ingestor, on_written=on_written, **changes)
    return ingestor, written


def _no_producer_left() -> bool:
    return not any(t.name == PRODUCER and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("prefetch", [0, 2])
def test_batches_commit_in_input_order_one_transaction_each(personalizer, prefetch):
    items = _messages(50)
    ingestor, written = _ingestor(personalizer, batch_chunks=8, prefetch=prefetch)
    result = ingestor.ingest("u", _lazy(items))
    assert result.documents_added == 50 and result.chunks_added == 50
    # One commit (= one data version) per batch, acknowledged in order.
    assert [b.version for b in written] == list(range(1, len(written) + 1)) == list(range(1, 8))
    assert personalizer.store.data_version("u") == 7
    ids = np.concatenate([b.chunk_ids for b in written])
    assert (np.diff(ids) > 0).all()
    assert list(result.document_ids) == sorted(result.document_ids)
    texts = [c.text for c in personalizer.store.chunks("u", ids.tolist()).values()]
    assert texts == [i.text for i in items]
    # The vector index followed every batch.
    assert personalizer.index.count("u") == 50
    assert personalizer.index.synced_version("u") == 7
    assert _no_producer_left()


def test_overlap_and_threaded_results_match_inline(tmp_path, embedder):
    items = _messages(40) + _messages(5)  # 5 duplicates
    got = []
    for prefetch in (0, 2):
        with Personalizer.open(tmp_path / f"p{prefetch}", embedder=embedder) as p:
            ingestor, _ = _ingestor(p, batch_chunks=8, prefetch=prefetch)
            r = ingestor.ingest("u", _lazy(items))
            got.append((r.documents_added, r.chunks_added, r.duplicates_skipped,
                        [h.external_id for h in p.search("u", "dog number 7", k=5)]))
    assert got[0] == got[1]
    assert got[0][:3] == (40, 40, 5)


def test_loading_runs_ahead_of_embedding_but_bounded(personalizer, embedder):
    log: list[tuple[str, int]] = []
    slow = _Recording(embedder, sleep_s=0.05, log=log)
    ingestor, _ = _ingestor(personalizer, embedder=slow, batch_chunks=4, prefetch=1)
    ingestor.ingest("u", _lazy(_messages(40), log))
    first_end = log.index(("embed-end", 1))
    loaded_before = [n for kind, n in log[:first_end] if kind == "load"]
    # Batch 2 (items 4..7) was loaded while batch 1 was being embedded ...
    assert max(loaded_before) >= 7
    # ... but never more than the queue depth (+ the batch in hand + one being filled) ahead.
    assert max(loaded_before) < 4 * 4


def test_producer_exception_propagates_after_committed_batches(personalizer):
    def broken() -> Iterator[LoadedItem]:
        yield from _messages(20)
        raise ValueError("parser bug")

    ingestor, written = _ingestor(personalizer, batch_chunks=8)
    with pytest.raises(ValueError, match="parser bug"):
        ingestor.ingest("u", broken())
    # The two full batches before the failure were acknowledged; nothing else.
    assert personalizer.store.stats("u")["messages"] == 16
    assert len(written) == 2
    assert _no_producer_left()


def test_consumer_exception_stops_the_producer(personalizer, embedder):
    failing = _Recording(embedder, fail_on=2)
    ingestor, written = _ingestor(personalizer, embedder=failing, batch_chunks=4, prefetch=1)
    with pytest.raises(RuntimeError, match="backend crashed"):
        ingestor.ingest("u", _lazy(_messages(400)))
    assert len(written) == 1 and personalizer.store.stats("u")["messages"] == 4
    assert _no_producer_left()  # joined, not left blocked on a full queue


def test_per_file_errors_are_reported_not_raised(personalizer, tmp_path: Path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for n in range(6):
        (folder / f"note{n}.txt").write_text(f"Note {n}. I like hiking in the Alps, trip number {n}.")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    personalizer._ingestor.batch_chunks = 2
    result = personalizer.add_documents("u", [folder, tmp_path / "missing.txt"])
    assert result.documents_added == 6
    sources = sorted(Path(e.source).name for e in result.errors)
    assert sources == ["broken.pdf", "missing.txt"]
    assert _no_producer_left()


@pytest.mark.parametrize("flag", [True, False])
def test_progress_flag(personalizer, capsys, flag):
    personalizer.add_messages("u", [{"role": "user", "content": f"message {i}"} for i in range(40)],
                              progress=flag)
    err = capsys.readouterr().err
    assert ("ingest" in err) is flag
