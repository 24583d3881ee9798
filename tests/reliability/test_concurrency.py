"""Several threads and several processes ingesting and querying one data directory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from personalize import Personalizer
from personalize.testing import HashingEmbedder

REPO = Path(__file__).resolve().parents[2]


def _consistent(p: Personalizer) -> None:
    for user in p.users():
        p.search(user, "subject", k=1)
        assert np.array_equal(np.sort(p.store.chunk_ids(user)), np.sort(p.index.ids(user)))


def test_threads_share_one_personalizer(tmp_path: Path):
    p = Personalizer.open(tmp_path / "d", embedder=HashingEmbedder())
    errors: list[BaseException] = []
    acked: set[str] = set()
    lock = threading.Lock()

    def writer(w: int) -> None:
        for n in range(40):
            user = "shared" if n % 2 else f"own{w}"
            p.add_documents(user, [f"thread {w} note {n} about subject {n % 5}"], ids=[f"t{w}-{n}"])
            with lock:
                acked.add(f"t{w}-{n}")

    def reader(r: int) -> None:
        for n in range(60):
            for hit in p.search("shared", f"subject {n % 5}", k=5):
                assert hit.chunk.user_id == "shared"
            p.stats("shared") if p.store.has_user("shared") else None

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(writer, w) for w in range(4)] + [pool.submit(reader, r) for r in range(3)]
        for f in futures:
            try:
                f.result(timeout=300)
            except BaseException as exc:  # collect, then fail with all of them
                errors.append(exc)
    assert not errors, errors
    stored = {e for (e,) in p.store.query("SELECT external_id FROM documents")}
    assert stored == acked
    _consistent(p)
    p.close()


def test_threads_run_context_concurrently(tmp_path: Path):
    """Many callers share the graph's long-lived threads: each gets its own user's context, as if alone."""
    p = Personalizer.open(tmp_path / "d", embedder=HashingEmbedder())
    users = [f"u{n}" for n in range(6)]
    for n, user in enumerate(users):
        p.add_documents(user, [f"{user} likes topic {n} and subject {k}" for k in range(12)],
                        ids=[f"{user}-{k}" for k in range(12)])
    queries = [f"subject {k}" for k in range(5)]
    alone = {(u, q): p.context(u, q, budget_tokens=200).to_prompt() for u in users for q in queries}

    def caller(user: str) -> None:
        for _ in range(6):
            for q in queries:
                ctx = p.context(user, q, budget_tokens=200)
                assert ctx.to_prompt() == alone[(user, q)]
                assert all(s.external_id.startswith(f"{user}-") for item in ctx.items for s in item.sources)

    before = p._graph_threads().submitted
    try:
        with ThreadPoolExecutor(len(users)) as pool:
            for f in [pool.submit(caller, u) for u in users]:
                f.result(timeout=300)
        # Every run repeats one of the `alone` runs, so it submits as many fetch tasks as that did.
        assert p._graph_threads().submitted - before == 6 * before > 0
    finally:
        p.close()


def test_processes_share_one_data_directory(tmp_path: Path):
    data_dir = tmp_path / "d"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.reliability.concurrent_writer", str(data_dir), str(w), "25"],
                         cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(3)
    ]
    acked: set[str] = set()
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        acked |= {line.split()[2] for line in out.splitlines() if line.startswith("ACK ")}
    assert len(acked) == 75
    with Personalizer.open(data_dir, embedder=HashingEmbedder()) as p:
        stored = {e for (e,) in p.store.query("SELECT external_id FROM documents")}
        assert stored == acked
        assert p.stats("shared")["documents"] == 3 * 12
        _consistent(p)
        hits = p.search("shared", "worker 2 note 5 about subject 5", k=1)
        assert hits and hits[0].external_id == "w2-5"
