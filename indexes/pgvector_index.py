"""pgvector backend: every user's vectors in one PostgreSQL table, next to the store's rows.

One table per dimension, ``pz_vectors_d<dim> (user_id, chunk_id, embedding vector(dim))``,
with an HNSW index (cosine) and the primary key ``(user_id, chunk_id)``; a
second table, ``pz_vector_users``, holds each user's vector count and the store
data version the vectors were synchronized to. Both have row-level security on
``user_id`` (see ``personalize/storage/_pg_conn.py``), so a search is confined
to one user by the database as well as by its ``WHERE``.

How a search runs depends on how many vectors it may consider:

- at most ``exact_threshold`` (a small user, or a small ``allowed_ids`` set):
  an exact scan of that user's rows through the primary key (``enable_indexscan``
  off, so the planner cannot pick the HNSW index);
- more: the HNSW index with ``hnsw.iterative_scan = relaxed_order``, so a
  per-user filter still returns ``k`` rows (plain HNSW filters *after* taking
  ``ef_search`` neighbours from all users, and returned 3.9 of 10 rows for a
  user holding a tenth of the table). Results are re-sorted, as relaxed order
  requires.

The threshold default comes from ``tests/bench/bench_storage.py`` (see
docs/deployment.md): below it an exact scan is about as fast and exact.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from typing import Any

import numpy as np

from personalize._ids import validate_user_id
from personalize.errors import ConfigError, IndexBackendError, MissingDependencyError

from .base import EMPTY_IDS, as_id_array, as_query_matrix

__all__ = ["DEFAULT_EXACT_THRESHOLD", "PgVectorIndex"]

logger = logging.getLogger(__name__)

#: Users (or allowed-id sets) up to this many vectors are searched exactly. Measured
#: (bench_storage, 384-d MiniLM vectors, one 38.5k-row table, docs/benchmarks.md): exact
#: 1.5 ms at 2k vectors and 6.9 ms at 5k; HNSW with iterative scan 4.2 ms and 3.1 ms, so
#: the lines cross near 3k (below it a small user's rows are also too sparse in the
#: graph for HNSW to find them quickly: 8 ms for 500).
DEFAULT_EXACT_THRESHOLD = 3_000

_USERS_TABLE = "pz_vector_users"
_POLICY = (
    "user_id = current_setting('personalize.user_id', true)"
    " OR current_setting('personalize.scope', true) = 'admin'"
)


def _import_pgvector() -> Any:
    try:
        from pgvector.psycopg import register_vector
    except ImportError as exc:
        raise MissingDependencyError("pgvector", "postgres", "the pgvector index") from exc
    return register_vector


def vector_schema(dim: int, app_role: str | None) -> list[str]:
    """DDL for the vector tables of ``dim`` (idempotent), granted to ``app_role``."""
    table = f"pz_vectors_d{int(dim)}"
    sql = [
        "CREATE EXTENSION IF NOT EXISTS vector",
        f"""CREATE TABLE IF NOT EXISTS {_USERS_TABLE} (
            dim            integer NOT NULL,
            user_id        text    NOT NULL,
            n              bigint  NOT NULL DEFAULT 0,
            synced_version bigint,
            PRIMARY KEY (dim, user_id))""",
        f"""CREATE TABLE IF NOT EXISTS {table} (
            user_id   text   NOT NULL,
            chunk_id  bigint NOT NULL,
            embedding vector({int(dim)}) NOT NULL,
            PRIMARY KEY (user_id, chunk_id))""",
        f"CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table}"
        " USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
    ]
    for name in (_USERS_TABLE, table):
        sql += [
            f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY",
            f"DROP POLICY IF EXISTS pz_user_rows ON {name}",
            f"CREATE POLICY pz_user_rows ON {name} USING ({_POLICY}) WITH CHECK ({_POLICY})",
        ]
        if app_role:
            sql.append(f'GRANT SELECT, INSERT, UPDATE, DELETE ON {name} TO "{app_role}"')
    return sql


class PgVectorIndex:
    """Per-user vector search in PostgreSQL with pgvector.

    Args:
        dsn: the database the application connects to (its role needs no
            ownership; row-level security confines it to one user per transaction).
        dim: vector dimension.
        owner_dsn: a role allowed to create the tables (defaults to ``dsn``);
            used once, on open, and grants the ``dsn`` role what it needs.
        exact_threshold: searches over at most this many vectors are exact.
        ef_search: HNSW candidate list size (raised to ``2 * k`` for large ``k``).
        store: a ``PostgresStore`` whose connection pool to share (instead of ``dsn``).
        pool_size: connections in this index's own pool.
    """

    def __init__(
        self,
        dsn: str | None = None,
        dim: int = 384,
        *,
        owner_dsn: str | None = None,
        exact_threshold: int = DEFAULT_EXACT_THRESHOLD,
        ef_search: int = 100,
        store: Any = None,
        pool_size: int = 4,
        attempts: int = 3,
        wait_s: float = 5.0,
    ) -> None:
        register_vector = _import_pgvector()
        from personalize.storage._pg_conn import PgConnector, import_psycopg

        psycopg = import_psycopg()
        if dim <= 0:
            raise ConfigError(f"dim must be positive, not {dim}")
        self.dim = int(dim)
        self.exact_threshold = int(exact_threshold)
        self.ef_search = int(ef_search)
        self._table = f"pz_vectors_d{self.dim}"
        self._lock = threading.Lock()
        if store is not None:
            dsn = store.dsn
            owner_dsn = owner_dsn or getattr(store, "owner_dsn", None)
        if not dsn:
            raise ConfigError("PgVectorIndex needs a dsn or a PostgresStore")
        self._ensure_schema(psycopg, dsn, owner_dsn or dsn)
        self._db = PgConnector(dsn, min_size=1, max_size=pool_size, attempts=attempts, wait_s=wait_s,
                               configure=register_vector, application_name="personalize-pgvector")

    # -- schema -----------------------------------------------------------------

    def _ensure_schema(self, psycopg: Any, dsn: str, owner_dsn: str) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
                app_role = conn.execute("SELECT current_user").fetchone()[0]
                ready = conn.execute(
                    "SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL"
                    " AND has_table_privilege(%s, 'DELETE')",
                    (self._table, _USERS_TABLE, self._table),
                ).fetchone()[0]
            if ready:
                return
            with psycopg.connect(owner_dsn, autocommit=True, connect_timeout=10) as conn:
                owner_role = conn.execute("SELECT current_user").fetchone()[0]
                with conn.transaction():
                    # Two processes opening at once must not both run CREATE.
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext('personalize.pgvector.schema'))")
                    for statement in vector_schema(self.dim, app_role if app_role != owner_role else None):
                        conn.execute(statement)
        except psycopg.OperationalError as exc:
            from personalize.storage._pg_conn import StoreUnavailableError

            raise StoreUnavailableError(f"PostgreSQL is unreachable: {exc}") from exc
        except psycopg.Error as exc:
            raise IndexBackendError(f"could not create the pgvector tables: {exc}") from exc

    # -- helpers --------------------------------------------------------------

    def _run(self, user_id: str | None, fn: Any) -> Any:
        from personalize.storage._pg_conn import StoreUnavailableError, import_psycopg

        psycopg = import_psycopg()
        try:
            return self._db.run(fn, user_id=user_id)
        except StoreUnavailableError:
            raise
        except psycopg.Error as exc:
            raise IndexBackendError(f"pgvector query failed: {exc}") from exc

    def _lock_user_row(self, cur: Any, user_id: str) -> None:
        # The user's row first: concurrent writers of one user serialize here,
        # in the same order, so they cannot deadlock on the vector rows.
        cur.execute(
            f"INSERT INTO {_USERS_TABLE} (dim, user_id) VALUES (%s, %s)"
            f" ON CONFLICT (dim, user_id) DO UPDATE SET n = {_USERS_TABLE}.n",
            (self.dim, user_id),
        )

    def _recount(self, cur: Any, user_id: str) -> None:
        cur.execute(
            f"UPDATE {_USERS_TABLE} SET n = (SELECT count(*) FROM {self._table} WHERE user_id = %s)"
            " WHERE dim = %s AND user_id = %s",
            (user_id, self.dim, user_id),
        )

    # -- VectorIndex ----------------------------------------------------------

    def add(self, user_id: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        validate_user_id(user_id)
        ids = as_id_array(ids)
        if len(ids) == 0:
            return
        vectors = as_query_matrix(vectors, self.dim)
        if len(vectors) != len(ids):
            raise ConfigError(f"{len(ids)} ids for {len(vectors)} vectors")
        # Later duplicates win, as in a sequence of upserts.
        _, last = np.unique(ids[::-1], return_index=True)
        keep = np.sort(len(ids) - 1 - last)
        rows = [(user_id, int(ids[i]), vectors[i]) for i in keep]

        def write(cur: Any) -> None:
            self._lock_user_row(cur, user_id)
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS pz_vec_load (LIKE {self._table}) ON COMMIT DELETE ROWS")
            with cur.copy("COPY pz_vec_load (user_id, chunk_id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["text", "int8", "vector"])
                for row in rows:
                    copy.write_row(row)
            cur.execute(
                f"INSERT INTO {self._table} (user_id, chunk_id, embedding)"
                " SELECT user_id, chunk_id, embedding FROM pz_vec_load"
                " ON CONFLICT (user_id, chunk_id) DO UPDATE SET embedding = excluded.embedding"
            )
            self._recount(cur, user_id)

        self._run(user_id, write)

    def search(
        self,
        user_id: str,
        queries: np.ndarray,
        k: int,
        allowed_ids: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        validate_user_id(user_id)
        queries = as_query_matrix(queries, self.dim)
        n = len(queries)
        scores = np.zeros((n, max(k, 0)), np.float32)
        out_ids = np.full((n, max(k, 0)), -1, np.int64)
        allowed = None if allowed_ids is None else as_id_array(allowed_ids)
        if k <= 0 or n == 0 or (allowed is not None and len(allowed) == 0):
            return scores, out_ids

        def read(cur: Any) -> list[list[tuple[int, float]]]:
            row = cur.execute(
                f"SELECT n FROM {_USERS_TABLE} WHERE dim = %s AND user_id = %s", (self.dim, user_id)
            ).fetchone()
            total = 0 if row is None else int(row[0])
            if total == 0:
                return []
            considered = total if allowed is None else min(total, len(allowed))
            where = "user_id = %s" + ("" if allowed is None else " AND chunk_id = ANY(%s)")
            params: list[Any] = [user_id] + ([] if allowed is None else [allowed.tolist()])
            if considered <= self.exact_threshold:
                # An exact scan through the primary key; HNSW is an index scan, so this rules it out.
                cur.execute("SELECT set_config('enable_indexscan', 'off', true)")
                sql = (f"SELECT chunk_id, embedding <=> %s AS d FROM {self._table}"
                       f" WHERE {where} ORDER BY d LIMIT %s")
            else:
                # Otherwise the planner may prefer the primary key plus a sort (exact,
                # and slower for large users): no plan but the HNSW scan returns rows
                # in distance order without a sort. One round trip for the settings.
                cur.execute(
                    "SELECT set_config('hnsw.ef_search', %s, true),"
                    " set_config('hnsw.iterative_scan', 'relaxed_order', true),"
                    " set_config('enable_sort', 'off', true), set_config('enable_seqscan', 'off', true)",
                    (str(max(self.ef_search, 2 * k)),),
                )
                # relaxed_order may return rows slightly out of order: sort the k again.
                sql = (f"WITH c AS MATERIALIZED (SELECT chunk_id, embedding <=> %s AS d FROM {self._table}"
                       f" WHERE {where} ORDER BY embedding <=> %s LIMIT %s) SELECT chunk_id, d FROM c ORDER BY d")
            results = []
            for q in queries:
                if considered <= self.exact_threshold:
                    cur.execute(sql, [q, *params, k])
                else:
                    cur.execute(sql, [q, *params, q, k])
                results.append(cur.fetchall())
            return results

        for i, rows in enumerate(self._run(user_id, read)):
            m = min(len(rows), k)
            if m:
                out_ids[i, :m] = [r[0] for r in rows[:m]]
                scores[i, :m] = 1.0 - np.asarray([r[1] for r in rows[:m]], dtype=np.float32)
        return scores, out_ids

    def delete(self, user_id: str, ids: np.ndarray) -> None:
        validate_user_id(user_id)
        ids = as_id_array(ids)
        if len(ids) == 0:
            return

        def write(cur: Any) -> None:
            self._lock_user_row(cur, user_id)
            cur.execute(f"DELETE FROM {self._table} WHERE user_id = %s AND chunk_id = ANY(%s)",
                        (user_id, ids.tolist()))
            self._recount(cur, user_id)

        self._run(user_id, write)

    def delete_user(self, user_id: str) -> None:
        validate_user_id(user_id)

        def write(cur: Any) -> None:
            cur.execute(f"DELETE FROM {self._table} WHERE user_id = %s", (user_id,))
            cur.execute(f"DELETE FROM {_USERS_TABLE} WHERE dim = %s AND user_id = %s", (self.dim, user_id))

        self._run(user_id, write)

    def count(self, user_id: str) -> int:
        validate_user_id(user_id)
        row = self._run(user_id, lambda cur: cur.execute(
            f"SELECT n FROM {_USERS_TABLE} WHERE dim = %s AND user_id = %s", (self.dim, user_id)
        ).fetchone())
        return 0 if row is None else int(row[0])

    def ids(self, user_id: str) -> np.ndarray:
        validate_user_id(user_id)
        rows = self._run(user_id, lambda cur: cur.execute(
            f"SELECT chunk_id FROM {self._table} WHERE user_id = %s", (user_id,)
        ).fetchall())
        return np.asarray([r[0] for r in rows], dtype=np.int64) if rows else EMPTY_IDS

    def has_user(self, user_id: str) -> bool:
        validate_user_id(user_id)
        return self._run(user_id, lambda cur: cur.execute(
            f"SELECT 1 FROM {_USERS_TABLE} WHERE dim = %s AND user_id = %s", (self.dim, user_id)
        ).fetchone()) is not None

    def delete_users_except(self, keep: Collection[str]) -> int:
        wanted = sorted({validate_user_id(u) for u in keep})

        def write(cur: Any) -> int:
            gone = cur.execute(
                f"DELETE FROM {_USERS_TABLE} WHERE dim = %s AND NOT (user_id = ANY(%s)) RETURNING user_id",
                (self.dim, wanted),
            ).fetchall()
            cur.execute(f"DELETE FROM {self._table} WHERE NOT (user_id = ANY(%s))", (wanted,))
            return len(gone)

        return int(self._run(None, write))

    def synced_version(self, user_id: str) -> int | None:
        validate_user_id(user_id)
        row = self._run(user_id, lambda cur: cur.execute(
            f"SELECT synced_version FROM {_USERS_TABLE} WHERE dim = %s AND user_id = %s", (self.dim, user_id)
        ).fetchone())
        return None if row is None or row[0] is None else int(row[0])

    def mark_synced(self, user_id: str, version: int) -> None:
        validate_user_id(user_id)

        def write(cur: Any) -> None:
            cur.execute(
                f"INSERT INTO {_USERS_TABLE} (dim, user_id, synced_version) VALUES (%s, %s, %s)"
                " ON CONFLICT (dim, user_id) DO UPDATE SET synced_version = excluded.synced_version",
                (self.dim, user_id, int(version)),
            )

        self._run(user_id, write)

    def save(self) -> None:
        """Every write is committed when it returns."""

    def close(self) -> None:
        with self._lock:
            if not self._db.closed:
                self._db.close()
