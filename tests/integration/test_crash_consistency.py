"""Kill the ingesting process at random points; reopening finds a consistent store."""

from __future__ import annotations

import random

from .crash_check import run_and_kill, verify


def test_kill_during_ingest_with_real_model(tmp_path, embedder):
    rng = random.Random(1234)
    data_dir = tmp_path / "d"
    acked: set = set()
    for round_no in range(3):
        acked |= run_and_kill(data_dir, embedder="minilm", start=round_no * 100_000, rng=rng, max_wait=2.0)
        verify(data_dir, embedder, acked)
    assert acked, "the worker acknowledged nothing: the test would prove nothing"
