"""Shared crash-test logic: run the worker, SIGKILL it at a random moment, verify the store."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

WORKER = [sys.executable, "-m", "tests.integration.crash_worker"]


def run_and_kill(data_dir: Path, *, embedder: str, start: int, rng: random.Random,
                 refresh: bool = False, max_wait: float = 1.5) -> set[tuple[str, str]]:
    """Start a worker, kill it with SIGKILL after a random delay; return what it acknowledged."""
    repo = Path(__file__).resolve().parents[2]
    cmd = WORKER + [str(data_dir), "--embedder", embedder, "--start", str(start)]
    if refresh:
        cmd.append("--refresh")
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(repo)})
    acked: set[tuple[str, str]] = set()
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("READY"):
                ready.set()
            elif line.startswith("ACK "):
                _, user, ext = line.split()
                acked.add((user, ext))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not ready.wait(120):
        proc.kill()
        raise AssertionError("worker never became ready")
    time.sleep(rng.uniform(0.0, max_wait))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join(5)
    return acked


def verify(data_dir: Path, embedder, acked: set[tuple[str, str]]) -> None:
    """Reopen the store and check consistency, durability and uniqueness."""
    from personalize import Personalizer

    with Personalizer.open(data_dir, embedder=embedder) as p:
        for user in p.users():
            rows = p.store.query(
                "SELECT d.external_id, COUNT(*) FROM documents d WHERE d.user_id = ? GROUP BY d.external_id",
                (user,),
            )
            assert all(n == 1 for _, n in rows), f"duplicated documents for {user}"
            orphans = p.store.query(
                "SELECT COUNT(*) FROM documents d WHERE user_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM chunks c WHERE c.doc_id = d.id)", (user,))[0][0]
            assert orphans == 0, "a document without chunks"
            # Searching reconciles the derived index; afterwards it equals the truth.
            p.search(user, "topic 3", k=3)
            truth = np.sort(p.store.chunk_ids(user))
            held = np.sort(p.index.ids(user))
            assert np.array_equal(truth, held), f"index and SQLite disagree for {user}"
            for hit in p.search(user, "document topic word", k=20):
                assert hit.chunk.user_id == user
        present = {
            (u, e) for u, e in p.store.query("SELECT user_id, external_id FROM documents")
        }
        lost = acked - present
        assert not lost, f"acknowledged documents lost: {sorted(lost)[:5]}"
