"""SIGKILL the ingesting (and refreshing) process at random points, at least 50 times.

After every kill the store must open, be consistent (every searchable chunk has
its row and every row its vector), have lost no acknowledged document, and hold
no duplicate.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from personalize import Personalizer
from personalize.testing import HashingEmbedder

REPO = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("PERSONALIZE_CRASH_KILLS", "50"))


class ForkServer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.fork_worker"], cwd=REPO, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.expect("SERVER READY", timeout=120)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, prefix: str, timeout: float = 60) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line.startswith(prefix):
                return line
            self.other.append(line)
        raise AssertionError(f"timed out waiting for {prefix!r}")

    other: list[str] = []

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def drain(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.lines.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self.send("QUIT")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _verify(data_dir: Path, acked: set[tuple[str, str]]) -> None:
    with Personalizer.open(data_dir, embedder=HashingEmbedder()) as p:
        for user in p.users():
            dup = p.store.query(
                "SELECT external_id, COUNT(*) FROM documents WHERE user_id = ? GROUP BY external_id HAVING COUNT(*) > 1",
                (user,))
            assert not dup, f"duplicated documents: {dup[:3]}"
            orphans = p.store.query(
                "SELECT COUNT(*) FROM documents d WHERE user_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM chunks c WHERE c.doc_id = d.id)", (user,))[0][0]
            assert orphans == 0
            p.search(user, "topic 3", k=3)  # reconciles the derived index from SQLite
            assert np.array_equal(np.sort(p.store.chunk_ids(user)), np.sort(p.index.ids(user)))
            for hit in p.search(user, "I love topic document", k=30):
                assert hit.chunk.user_id == user
            facts = p.store.query(
                "SELECT subject, COUNT(*) FROM facts WHERE user_id = ? AND superseded_by IS NULL "
                "GROUP BY subject, text HAVING COUNT(*) > 1", (user,))
            assert not facts, f"duplicated current facts: {facts[:3]}"
        present = set(p.store.query("SELECT user_id, external_id FROM documents"))
        lost = acked - present
        assert not lost, f"acknowledged documents lost: {sorted(lost)[:5]}"


@pytest.mark.parametrize("mode", ["ingest", "refresh"])
def test_sigkill_loop(tmp_path: Path, mode: str):
    if mode == "refresh" and not hasattr(Personalizer, "refresh"):
        pytest.skip("refresh is not available")
    rng = random.Random(2024)
    data_dir = tmp_path / "d"
    server = ForkServer()
    acked: set[tuple[str, str]] = set()
    kills = KILLS if mode == "ingest" else max(10, KILLS // 2)
    try:
        for round_no in range(kills):
            server.send(f"RUN {data_dir} {round_no * 100_000} {mode}")
            pid = int(server.expect("CHILD").split()[1])
            server.expect(f"READY {pid}")
            time.sleep(rng.uniform(0.0, 0.4))
            os.kill(pid, signal.SIGKILL)
            server.send(f"REAP {pid}")
            time.sleep(0.05)
            for line in server.drain() + server.other:
                if line.startswith("ACK "):
                    _, user, ext = line.split()
                    acked.add((user, ext))
            server.other.clear()
            _verify(data_dir, acked)
    finally:
        server.close()
    assert len(acked) > kills, "too few acknowledged writes for the kills to mean anything"
