"""PostgreSQL, the engine for several app hosts sharing one store (psycopg 3, a connection pool).

``Personalizer.open("postgresql://app@db/personalize")`` or
``PostgresStore(dsn)``. Every statement of :class:`SQLStore` runs unchanged:
the cursor turns ``?`` placeholders into psycopg's ``%s``.

- **Isolation in the database**: each transaction sets ``personalize.user_id``
  (``SET LOCAL``) and every table holding personal data has a row-level
  security policy on it (``_postgres_schema.py``). Connect as a role that does
  not own the tables (``owner_dsn`` names the one that does, for migrations):
  then a query that forgot its ``WHERE user_id = ?`` still reads one user.
- **Several hosts**: writers of one user serialize on the user's row
  (``_lock_user``: ``INSERT .. ON CONFLICT DO UPDATE`` locks it); data versions
  come from a sequence, so they never repeat across hosts or incarnations of a
  user; :meth:`user_lock` is a PostgreSQL advisory lock (one refresher per user).
- **Failures**: a lost connection or a restarting server raises
  ``StoreUnavailableError`` after a bounded number of attempts
  (``attempts`` x ``wait_s``); a transaction is all or nothing, so a write that
  failed left nothing behind. :meth:`run` retries a whole transaction function.
- **Deletes**: rows are gone for every query at commit. PostgreSQL reclaims
  their space later (autovacuum) and does not overwrite the freed bytes;
  :meth:`_scrub_deleted` does nothing (the app role may not VACUUM tables it
  does not own). See docs/deployment.md for erasure on disk.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from ..errors import StoreError
from ._pg_conn import PgConnector, StoreUnavailableError, import_psycopg, is_unavailable
from ._postgres_schema import MIGRATIONS, SCHEMA_VERSION, grants, rls
from .base import SQLStore

__all__ = ["PostgresStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_OPS = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


@functools.lru_cache(maxsize=4096)
def _pg_sql(sql: str) -> str:
    """Shared SQL (``?`` placeholders, no literal ``%``) in psycopg's ``%s`` style."""
    return sql.replace("%", "%%").replace("?", "%s")


@functools.lru_cache(maxsize=256)
def _pg_numbered(sql: str) -> str:
    """Shared SQL with PostgreSQL's own ``$1, $2, ...`` placeholders (for ``PREPARE``)."""
    parts = sql.split("?")
    return "".join(part + (f"${n}" if n < len(parts) else "") for n, part in enumerate(parts, 1))


try:
    from psycopg import DataError as _DataError
except ImportError:  # pragma: no cover - import_psycopg() raises the actionable error
    _DataError = Exception  # type: ignore[assignment,misc]


def _param(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, memoryview):
        return bytes(value)
    return value


class _Cursor:
    """The DB-API subset shared SQL uses, over a psycopg cursor.

    Rows are fetched at ``execute`` so that a loop over one statement's rows
    may run other statements on the same cursor (as the shared code does).
    """

    def __init__(self, cur: Any) -> None:
        self._cur = cur
        self._rows: list[tuple[Any, ...]] = []
        self._at = 0
        self.rowcount = -1

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        try:
            self._cur.execute(_pg_sql(sql), [_param(p) for p in params])
        except _DataError as exc:
            # Text with a NUL character: SQLite stores it, PostgreSQL refuses it.
            raise StoreError(f"PostgreSQL refused a value: {exc}") from exc
        self.rowcount = self._cur.rowcount
        self._rows = self._cur.fetchall() if self._cur.description is not None else []
        self._at = 0
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows = self._rows[self._at :]
        self._at = len(self._rows)
        return rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())


def _configure(conn: Any) -> None:
    """Numbers as Python ints/floats, not Decimal (``SUM`` of bigint is numeric in PostgreSQL)."""
    from psycopg.adapt import Loader

    class _NumericLoader(Loader):
        def load(self, data: Any) -> Any:
            text = bytes(data).decode()
            try:
                return int(text)
            except ValueError:
                return float(text)

    conn.adapters.register_loader("numeric", _NumericLoader)


def redact(dsn: str) -> str:
    """The DSN without its password (for messages and logs)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", re.sub(r"password=\S+", "password=***", dsn))


class PostgresStore(SQLStore):
    """A PostgreSQL database shared by every app host.

    Args:
        dsn: what the application connects as (``postgresql://user@host/db``).
            Prefer a role that owns nothing, so row-level security binds it.
        owner_dsn: a role owning (or allowed to create) the tables; used only
            when the schema must be created or migrated. Defaults to ``dsn``.
        pool_min, pool_max: connections per process.
        attempts, wait_s: a lost connection is retried this many times, each
            waiting up to ``wait_s`` seconds for a connection, before
            ``StoreUnavailableError``.
        prepare_reads: keep the plan of the read every search makes on each
            connection (``PREPARE``, session state). Behind a pooler that
            moves sessions between server connections (PgBouncer in
            transaction mode) pass ``False``; a missing statement also turns
            it off by itself.
    """

    dialect = "postgresql"
    in_batch = 5000

    def __init__(
        self,
        dsn: str,
        *,
        owner_dsn: str | None = None,
        pool_min: int = 1,
        pool_max: int = 10,
        attempts: int = 3,
        wait_s: float = 5.0,
        prepare_reads: bool = True,
    ) -> None:
        self.psycopg = import_psycopg()
        self.dsn = dsn
        self.owner_dsn = owner_dsn
        self._db = PgConnector(dsn, min_size=pool_min, max_size=pool_max, attempts=attempts,
                               wait_s=wait_s, configure=_configure, prepare_reads=prepare_reads)
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    # ------------------------------------------------------------- migrations
    def _current_version(self) -> tuple[int | None, bool]:
        """(schema version or None when there is no schema, whether our role may use every table)."""

        def read(cur: Any) -> tuple[int | None, bool]:
            cur.execute("SELECT to_regclass('meta') IS NOT NULL, to_regclass('history') IS NOT NULL")
            has_meta, has_last = cur.fetchone()
            if not has_meta:
                return None, False
            row = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            usable = bool(has_last) and cur.execute(
                "SELECT has_table_privilege('history', 'DELETE') AND has_sequence_privilege('pz_data_clock', 'USAGE')"
            ).fetchone()[0]
            return version, usable

        return self._db.run(read)

    def _migrate(self) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION` (as the owner role, under an advisory lock)."""
        version, usable = self._current_version()
        self._check_not_newer(version or 0)
        if version == SCHEMA_VERSION and usable:
            return
        psycopg = self.psycopg
        app_role = self._db.run(lambda cur: cur.execute("SELECT current_user").fetchone()[0])
        try:
            with psycopg.connect(self.owner_dsn or self.dsn, autocommit=True, connect_timeout=10) as conn:
                owner_role = conn.execute("SELECT current_user").fetchone()[0]
                while True:
                    with conn.transaction():
                        # One migrating process at a time, across hosts.
                        conn.execute("SELECT pg_advisory_xact_lock(hashtext('personalize.schema'))")
                        conn.execute("SELECT set_config('personalize.scope', 'admin', true)")
                        conn.execute("CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL)")
                        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                        current = int(row[0]) if row else 0
                        self._check_not_newer(current)
                        if current == SCHEMA_VERSION:
                            if app_role != owner_role:
                                for statement in grants(app_role):
                                    conn.execute(statement)
                            return
                        for statement in [*MIGRATIONS[current], *rls()]:
                            conn.execute(statement)
                        conn.execute(
                            "INSERT INTO meta (key, value) VALUES ('schema_version', %s) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            (str(current + 1),),
                        )
                        logger.info("PostgreSQL schema migrated to version %d", current + 1)
        except psycopg.Error as exc:
            if is_unavailable(exc):
                raise StoreUnavailableError(f"PostgreSQL is unreachable at {redact(self.dsn)}: {exc}") from exc
            raise StoreError(
                f"cannot create or migrate the schema at {redact(self.owner_dsn or self.dsn)}: {exc} "
                "(pass owner_dsn= a role that owns the tables)"
            ) from exc

    def _check_not_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database at {redact(self.dsn)} has schema version {version}, newer than this library "
                f"understands ({SCHEMA_VERSION}); upgrade personalize to open it"
            )

    # ---------------------------------------------------------------- plumbing
    @contextmanager
    def transaction(self, user_id: str | None = None) -> Iterator[_Cursor]:
        """A write transaction, all or nothing, with row-level security scoped to ``user_id``."""
        self._check_open()
        with self._db.transaction(user_id) as cur:
            yield _Cursor(cur)

    def run(self, fn: Callable[[_Cursor], T], *, user_id: str | None = None) -> T:
        """``fn(cursor)`` in one transaction, run again (bounded) if the connection was lost."""
        self._check_open()
        return self._db.run(lambda cur: fn(_Cursor(cur)), user_id=user_id)

    def query(
        self, sql: str, params: Sequence[Any] = (), *, user_id: str | None = None, prepared: bool = False
    ) -> list[tuple[Any, ...]]:
        """One read, scoped to ``user_id``, in one round trip (a lost connection is retried)."""
        self._check_open()
        try:
            return self._db.read(_pg_sql(sql), [_param(p) for p in params], user_id=user_id,
                                 prepared=_pg_numbered(sql) if prepared else None)
        except _DataError as exc:
            raise StoreError(f"PostgreSQL refused a value: {exc}") from exc

    def _check_open(self) -> None:
        if self._db.closed:
            raise StoreError("the store is closed")

    def _next_version(self, cur: Any) -> int:
        return int(cur.execute("SELECT nextval('pz_data_clock')").fetchone()[0])

    def _json_filter(self, column: str, key: str, op: str, value: Any) -> tuple[str, list[Any]]:
        field = f"({column}::jsonb -> ?::text)"
        if op in ("$in", "$nin"):
            marks = ",".join("?::jsonb" for _ in value)
            values = [json.dumps(v) for v in value]
            if op == "$in":
                return f"{field} IN ({marks})", [key, *values]
            return f"({field} IS NULL OR {field} NOT IN ({marks}))", [key, key, *values]
        if op == "$ne":
            return f"({field} IS NULL OR {field} <> ?::jsonb)", [key, key, json.dumps(value)]
        return f"{field} {_OPS[op]} ?::jsonb", [key, json.dumps(value)]

    def _scrub_deleted(self) -> None:
        """Nothing: deleted rows are invisible at commit; autovacuum reclaims them (module docstring)."""

    @contextmanager
    def user_lock(self, user_id: str, name: str, *, wait: bool = True) -> Iterator[bool]:
        """A session advisory lock on (``user_id``, ``name``), held on one pooled connection.

        Shared by every host of the database. If that connection is lost the
        server releases the lock; the holder finds out at its next write.
        """
        self._check_open()
        key = f"personalize\x1f{name}\x1f{user_id}"
        conn = self._db._getconn()
        locked = False
        try:
            try:
                if wait:
                    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
                    locked = True
                else:
                    locked = bool(conn.execute(
                        "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)
                    ).fetchone()[0])
                conn.commit()
            except self.psycopg.Error as exc:
                if is_unavailable(exc, conn):
                    raise StoreUnavailableError("lost the PostgreSQL connection while taking a lock") from exc
                raise
            yield locked
        finally:
            if locked and not conn.broken:
                try:
                    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
                    conn.commit()
                except self.psycopg.Error:
                    logger.warning("could not release a PostgreSQL advisory lock; the server drops it with the session")
            self._db._pool.putconn(conn)

    def close(self) -> None:
        """Close the connection pool (idempotent)."""
        if not self._db.closed:
            self._db.close()

    def describe(self) -> dict[str, Any]:
        """Engine, server and schema version (for ``personalize info`` and logs)."""
        server = self.query("SHOW server_version")[0][0]
        return {"engine": self.dialect, "dsn": redact(self.dsn), "server_version": server,
                "schema_version": int(self.get_meta("schema_version") or 0)}
