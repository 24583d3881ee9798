"""Shared fixtures: the real MiniLM embedder (loaded once), fresh data directories."""

from __future__ import annotations

import os

# Tests run on 2 cores next to other processes; OpenMP thread pools that spin
# on oversubscribed cores make torch up to 50x slower. One thread is as fast
# for the small batches tests embed. (Benchmarks do not set this.)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
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
def personalizer(open_personalizer):
    """A fresh Personalizer (FAISS + MiniLM) over each store engine: SQLite in a temporary
    directory, and PostgreSQL (a fresh database on the session's server; see ``store_engine``)."""
    p = open_personalizer()
    yield p
    p.close()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sample_data(repo_root: Path) -> Path:
    """The bundled sample users (demos/data)."""
    return repo_root / "demos" / "data"


# -- Chroma server: a real `chroma run` on 127.0.0.1 --

def _free_chroma_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real `chroma run` server on 127.0.0.1, stopped at the end of the session."""
    pytest.importorskip("chromadb")
    exe = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not Path(exe).exists():
        pytest.skip("the chroma CLI is not installed")
    port = _free_chroma_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = open(path / "server.log", "wb")
    proc = subprocess.Popen(
        [exe, "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"chroma run exited: {(path / 'server.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("chroma run did not start within 60 s")
    yield ("127.0.0.1", port, path / "db")
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()



# -- PostgreSQL (issue 15): a real server started and stopped by the session --

@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL 18 + pgvector on 127.0.0.1 (tests/_postgres.py); skips if it cannot run."""
    from _postgres import running_server

    with running_server() as server:
        yield server


@pytest.fixture
def pg_database(pg_server):
    """A fresh, empty database (owner + non-owner app role DSNs), dropped afterwards."""
    db = pg_server.create_database()
    yield db
    db.drop()



@pytest.fixture(params=["sqlite", "postgresql"])
def store_engine(request) -> str:
    """The truth store's engine; every test using ``personalizer`` or ``open_personalizer`` runs over both."""
    return request.param


@pytest.fixture
def open_personalizer(request, store_engine, data_dir, embedder):
    """A factory ``(**open_kwargs) -> Personalizer`` on this test's store; call it again to reopen it.

    SQLite: the data directory ``data_dir``. PostgreSQL: a fresh database on
    the session's server, its schema created by the owner role, opened as the
    non-owner app role (so row-level security is in force), with this host's
    derived caches in ``data_dir``.
    """
    from personalize import Personalizer

    opened = []
    if store_engine == "sqlite":
        target = data_dir
    else:
        from personalize.storage.postgres import PostgresStore

        db = request.getfixturevalue("pg_database")
        PostgresStore(db.app_dsn, owner_dsn=db.owner_dsn).close()
        target = db.app_dsn

    def make(**kwargs):
        kwargs.setdefault("embedder", embedder)
        if store_engine != "sqlite":
            kwargs.setdefault("cache_dir", data_dir)
        p = Personalizer.open(target, **kwargs)
        opened.append(p)
        return p

    make.engine = store_engine
    make.target = target
    yield make
    for p in opened:
        p.close()
