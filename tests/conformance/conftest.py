"""Every VectorIndex backend, as a parametrized fixture (FAISS, Chroma embedded, Chroma server, pgvector)."""

from __future__ import annotations

import pytest

DIM = 16


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
