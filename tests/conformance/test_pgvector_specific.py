"""pgvector-specific behaviour: the HNSW path with iterative scan, the exact path, row-level security."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("psycopg")
pytest.importorskip("pgvector")

from personalize.indexes.pgvector_index import PgVectorIndex  # noqa: E402

DIM = 16


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def crowd():
    """Ten users of 150 vectors each; user u3 is the one we search."""
    rng = np.random.default_rng(11)
    return {f"u{i}": _unit(rng.normal(size=(150, DIM))) for i in range(10)}


def _fill(index: PgVectorIndex, crowd: dict[str, np.ndarray]) -> None:
    for i, (user, vecs) in enumerate(sorted(crowd.items())):
        index.add(user, np.arange(len(vecs)) + 1000 * i, vecs)


def _exact_top(vecs: np.ndarray, base: int, query: np.ndarray, k: int) -> set[int]:
    return set((np.argsort(-(vecs @ query))[:k] + base).tolist())


def test_hnsw_path_with_a_user_filter_returns_k_rows_of_that_user(pg_database, crowd):
    """One user holds a tenth of the table: iterative scan still fills k rows, all theirs."""
    index = PgVectorIndex(pg_database.app_dsn, DIM, owner_dsn=pg_database.owner_dsn, exact_threshold=0)
    _fill(index, crowd)
    queries = _unit(np.random.default_rng(3).normal(size=(20, DIM)))
    scores, ids = index.search("u3", queries, k=10)
    assert (ids >= 3000).all() and (ids < 3150).all()  # k rows, every one u3's
    recall = np.mean([len(set(ids[i].tolist()) & _exact_top(crowd["u3"], 3000, q, 10)) / 10
                      for i, q in enumerate(queries)])
    assert recall >= 0.9
    assert all(np.all(np.diff(row) <= 1e-6) for row in scores)  # re-sorted after relaxed order
    # A filter inside the user, through HNSW too.
    _, ids = index.search("u3", queries[0], k=5, allowed_ids=np.arange(3000, 3100))
    assert len(ids[0][ids[0] >= 0]) == 5 and set(ids[0].tolist()) <= set(range(3000, 3100))
    index.close()


def test_exact_path_matches_brute_force(pg_database, crowd):
    index = PgVectorIndex(pg_database.app_dsn, DIM, owner_dsn=pg_database.owner_dsn, exact_threshold=10_000)
    _fill(index, crowd)
    queries = _unit(np.random.default_rng(5).normal(size=(10, DIM)))
    scores, ids = index.search("u7", queries, k=10)
    for i, q in enumerate(queries):
        assert set(ids[i].tolist()) == _exact_top(crowd["u7"], 7000, q, 10)
        assert np.allclose(scores[i], np.sort(crowd["u7"] @ q)[::-1][:10], atol=1e-5)
    index.close()


def test_row_level_security_hides_other_users_rows_from_a_query_without_where(pg_database, crowd):
    """The app role does not own the tables: a query that forgot WHERE user_id sees one user only."""
    import psycopg

    index = PgVectorIndex(pg_database.app_dsn, DIM, owner_dsn=pg_database.owner_dsn)
    _fill(index, crowd)
    index.close()
    with psycopg.connect(pg_database.app_dsn, autocommit=True) as conn:
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'pz_vectors_d16'").fetchone()[0]
        assert owner != conn.execute("SELECT current_user").fetchone()[0]
        with conn.transaction():
            conn.execute("SELECT set_config('personalize.user_id', 'u3', true)")
            users = conn.execute("SELECT DISTINCT user_id FROM pz_vectors_d16").fetchall()  # no WHERE, on purpose
            assert users == [("u3",)]
            assert conn.execute("SELECT count(*) FROM pz_vectors_d16").fetchone()[0] == 150
        with conn.transaction():  # no user set: nothing at all
            assert conn.execute("SELECT count(*) FROM pz_vectors_d16").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM pz_vector_users").fetchone()[0] == 0
        with conn.transaction():  # and no writing into another user's rows either
            conn.execute("SELECT set_config('personalize.user_id', 'u3', true)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("INSERT INTO pz_vectors_d16 (user_id, chunk_id, embedding) VALUES ('u4', 1, %s)",
                             (str([0.25] * DIM),))
    with psycopg.connect(pg_database.owner_dsn) as conn:  # FORCE: even the owner is confined
        assert conn.execute("SELECT count(*) FROM pz_vectors_d16").fetchone()[0] == 0
