"""Every VectorIndex backend, as a parametrized fixture (FAISS, Chroma embedded, Chroma server, pgvector)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

DIM = 16


def _free_port() -> int:
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
    port = _free_port()
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


@pytest.fixture(params=["faiss", "chroma-embedded", "chroma-server", "pgvector"])
def backend_factory(request, tmp_path):
    """A callable returning a (re)opened index of the parametrized backend."""
    kind = request.param
    if kind == "faiss":
        from personalize.indexes import FaissIndex

        def make():
            return FaissIndex(tmp_path / "faiss", DIM)
    elif kind == "chroma-embedded":
        pytest.importorskip("chromadb")
        from personalize.indexes import ChromaIndex

        def make():
            return ChromaIndex(DIM, path=tmp_path / "chroma")
    elif kind == "pgvector":
        # A fresh database per test (orphan cleanup would see other tests' users),
        # opened as the non-owner app role: row-level security applies to it.
        db = request.getfixturevalue("pg_database")
        from personalize.indexes.pgvector_index import PgVectorIndex

        def make():
            return PgVectorIndex(db.app_dsn, DIM, owner_dsn=db.owner_dsn)
    else:
        host, port, _ = request.getfixturevalue("chroma_server")
        from personalize.indexes import ChromaIndex

        def make():
            return ChromaIndex(DIM, host=host, port=port)

    made = []

    def factory():
        index = make()
        made.append(index)
        return index

    factory.kind = kind
    yield factory
    if kind == "chroma-server":  # the server outlives the test: leave it empty
        index = make()
        index.delete_users_except(())
    for index in made:
        index.close()
