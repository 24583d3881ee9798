"""A user forgotten in one process and written again is a new incarnation for every other process.

Issue 13 finding 2: data versions used to restart at 1 after a forget, so a
process that had the user loaded believed its derived indexes current; its
FAISS shard kept the forgotten chunk, a search for the new text found
nothing, and the forgotten embedding came back to disk. Versions now come
from a global tick that never repeats.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from personalize import Personalizer
from personalize.testing.hashing_embedder import HashingEmbedder

WORKER = Path(__file__).with_name("personalizer_worker.py")


class Worker:
    def __init__(self, target: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def __call__(self, **cmd):
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        assert reply.pop("ok"), reply
        return reply

    def close(self) -> None:
        self(op="close")
        self.proc.wait(timeout=60)


def _files_holding(root: Path, needle: bytes) -> list[str]:
    return [str(f.relative_to(root)) for f in root.rglob("*") if f.is_file() and needle in f.read_bytes()]


def test_write_search_forget_elsewhere_write_search(tmp_path: Path):
    data = tmp_path / "data"
    old_text = "zebracorn ledger of the forgotten incarnation"
    old_vector = HashingEmbedder().embed([old_text])[0].astype(np.float32).tobytes()
    w = Worker(data)
    try:
        w(op="add", user="u", texts=[old_text])
        assert w(op="search", user="u", query="zebracorn ledger")["hits"] == [old_text]

        with Personalizer.open(data, embedder=HashingEmbedder()) as f:  # process F
            f.forget("u")

        w(op="add", user="u", texts=["kiwifruit notes of the new incarnation"])
        hits = w(op="search", user="u", query="kiwifruit notes")["hits"]
        assert hits == ["kiwifruit notes of the new incarnation"]
        assert w(op="search", user="u", query="zebracorn ledger", k=5)["hits"] == [
            "kiwifruit notes of the new incarnation"]  # the only item left; never the forgotten one
        w(op="add", user="u", texts=["one more write after the forget"])
    finally:
        w.close()
    with Personalizer.open(data, embedder=HashingEmbedder()) as fresh:
        texts = {h.text for h in fresh.search("u", "zebracorn ledger kiwifruit write", k=10)}
        assert old_text not in texts and len(texts) == 2
    assert _files_holding(data, old_text.encode()) == []
    assert _files_holding(data, old_vector) == [], "the forgotten embedding is on disk again"


def test_a_cache_of_a_forgotten_user_is_purged_at_next_access(tmp_path: Path):
    data = tmp_path / "data"
    w = Worker(data)
    try:
        w(op="add", user="u", texts=["quokkaberry jam recipe"])
        w(op="search", user="u", query="quokkaberry")
        with Personalizer.open(data, embedder=HashingEmbedder()) as f:
            f.forget("u")
        assert w(op="search", user="u", query="quokkaberry")["hits"] == []
    finally:
        w.close()
    assert _files_holding(data, b"quokkaberry") == []


def test_forget_racing_another_process_ingest_and_search(tmp_path: Path):
    """Issue 13 finding 3: both calls succeed, truthfully, and the loser cleans up after itself."""
    import threading

    data = tmp_path / "data"
    w = Worker(data)
    errors: list[BaseException] = []
    try:
        w(op="add", user="r", texts=["seed"])
        with Personalizer.open(data, embedder=HashingEmbedder()) as f:
            stop = threading.Event()

            def forgetter() -> None:
                try:
                    while not stop.is_set():
                        f.forget("r")
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)

            thread = threading.Thread(target=forgetter)
            thread.start()
            try:
                w(op="churn", user="r", times=20)  # raises in the test if the worker raised
            finally:
                stop.set()
                thread.join()
            f.forget("r")
    finally:
        w.close()
    assert not errors, errors
    with Personalizer.open(data, embedder=HashingEmbedder()) as fresh:
        assert "r" not in fresh.users()
    assert _files_holding(data, b"walruses") == []
