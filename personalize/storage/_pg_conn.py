"""PostgreSQL connections for the store and the pgvector index: a pool, scoped transactions, retries.

Every transaction names the user it is for. ``SET LOCAL`` (``set_config(..., true)``)
puts that user id in ``personalize.user_id`` for the transaction only, and the
row-level security policies of every table holding personal data compare each
row's ``user_id`` to it: a query that forgot its ``WHERE user_id = ?`` still
sees one user's rows. ``user_id=None`` is the admin scope (listing users,
migrations, orphan cleanup), marked by ``personalize.scope = 'admin'``. This
guards against mistakes in our SQL, not against hostile SQL: any role can set
its own settings, so the database role and the code stay the trust boundary.

Connection loss (a restarted server, a cut network) surfaces as
``StoreUnavailableError`` after a bounded number of attempts. ``run()`` retries
the *whole* transaction function, so a retried write is never half-applied:
PostgreSQL rolled back the attempt that lost its connection. psycopg prepares
statements after a few executions by default; a generic plan can swap an HNSW
scan for an exact one, so statements are never prepared (``prepare_threshold=None``).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from personalize.errors import MissingDependencyError, StoreUnavailableError

__all__ = ["PgConnector", "StoreUnavailableError", "import_psycopg", "is_unavailable"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: SQLSTATE classes/codes meaning "the server or the connection went away".
_UNAVAILABLE_CODES = ("08", "57P01", "57P02", "57P03", "53300")
#: Codes meaning "this attempt lost a race; running it again is safe and right".
_RETRY_CODES = ("40001", "40P01")


def import_psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("psycopg[binary,pool]", "postgres", "the PostgreSQL store") from exc
    return psycopg


def is_unavailable(exc: BaseException, conn: Any = None) -> bool:
    """Whether ``exc`` means the database is unreachable (as opposed to a bad statement)."""
    import psycopg
    import psycopg_pool

    if isinstance(exc, (psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed)):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    if conn is not None and conn.broken:
        return True
    code = getattr(exc, "sqlstate", None)
    if code is None:  # raised by libpq itself (connection refused, reset, timeout)
        return True
    return code.startswith("08") or code in _UNAVAILABLE_CODES


#: Without these, a host cut off from the database (no RST, just silence) waits on
#: TCP retransmissions for many minutes before a query fails. A DSN's own
#: values win.
_NETWORK_DEFAULTS = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 5_000,  # ms: data unacknowledged (by the peer's kernel) this long breaks the connection
}


def _network_defaults(dsn: str, connect_timeout_s: int, application_name: str) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(dsn)
    defaults = {**_NETWORK_DEFAULTS, "connect_timeout": connect_timeout_s, "application_name": application_name}
    return {k: v for k, v in defaults.items() if k not in given}


_SCOPE = "SELECT set_config('personalize.user_id', %s, true), set_config('personalize.scope', %s, true)"


def _scope_params(user_id: str | None) -> tuple[str, str]:
    return (user_id or "", "user" if user_id is not None else "admin")


#: Named statements each pooled connection keeps at most (a bound on server memory).
MAX_PREPARED = 32


def _is_retryable_race(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) in _RETRY_CODES


class PgConnector:
    """A connection pool whose transactions are scoped to one user (or admin).

    Args:
        dsn: a libpq connection string or ``postgresql://`` URL.
        min_size, max_size: pool bounds per process.
        attempts: how many times ``run()`` tries a transaction whose connection failed.
        wait_s: how long one attempt waits for a connection from the pool.
        backoff_s: the first pause between attempts (doubled each time).
        configure: called on every new connection (e.g. to register the vector type).
        prepare_reads: whether ``read(..., prepared=...)`` may prepare statements
            (session state; see ``PostgresStore``).
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        attempts: int = 3,
        wait_s: float = 5.0,
        backoff_s: float = 0.2,
        connect_timeout_s: int = 5,
        configure: Callable[[Any], None] | None = None,
        application_name: str = "personalize",
        prepare_reads: bool = True,
    ) -> None:
        import_psycopg()
        from psycopg_pool import ConnectionPool

        self.dsn = dsn
        self.attempts = max(1, int(attempts))
        self.wait_s = float(wait_s)
        self.backoff_s = float(backoff_s)
        self.max_size = int(max_size)
        self._configure_hook = configure
        # Per connection: statement text -> the name it is prepared under there.
        self._prepared: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()
        self._prepared_lock = threading.Lock()
        self.prepare_reads = prepare_reads
        self._pool = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=self.wait_s,
            kwargs={
                "prepare_threshold": None,
                # Transactions are opened by hand (BEGIN and the user's scope in
                # one round trip); a read is one round trip (see read()).
                "autocommit": True,
                **_network_defaults(dsn, connect_timeout_s, application_name),
            },
            configure=self._configure,
            reconnect_timeout=max(30.0, wait_s * attempts * 4),
            name="personalize",
        )
        self._pool.open(wait=False)

    def _configure(self, conn: Any) -> None:
        if self._configure_hook is not None:
            self._configure_hook(conn)

    def wait_ready(self) -> None:
        """Block until the pool has a connection, or raise ``StoreUnavailableError``."""
        self.run(lambda cur: cur.execute("SELECT 1").fetchone())

    # -- transactions ---------------------------------------------------------

    @contextmanager
    def transaction(self, user_id: str | None = None) -> Iterator[Any]:
        """One all-or-nothing transaction scoped to ``user_id`` (``None``: admin); yields a psycopg cursor.

        Getting a connection is retried; a connection lost inside the block
        raises ``StoreUnavailableError`` (the server rolled the transaction back).
        """
        conn = self._begin(user_id)
        try:
            try:
                with conn.cursor() as cur:
                    yield cur
            except BaseException:
                if not conn.broken:
                    try:
                        conn.execute("ROLLBACK")
                    except Exception:  # the connection died meanwhile; the server rolls back
                        logger.debug("rollback failed on a dying connection")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except Exception as exc:
                    if is_unavailable(exc, conn):
                        # The server may have committed before the connection died:
                        # all or nothing still holds, but running it again might not.
                        raise StoreUnavailableError(
                            "lost the PostgreSQL connection while committing; the transaction was "
                            "applied entirely or not at all"
                        ) from exc
                    raise
        except Exception as exc:
            if is_unavailable(exc, conn) and not isinstance(exc, StoreUnavailableError):
                lost = StoreUnavailableError("lost the PostgreSQL connection; the transaction was not applied")
                lost.rolled_back = True  # type: ignore[attr-defined]  # run() may run it again
                raise lost from exc
            raise
        finally:
            self._pool.putconn(conn)

    def _with_live_connection(self, first: Callable[[Any], T]) -> tuple[Any, T]:
        """A pooled connection on which ``first(conn)`` succeeded.

        A pooled connection may have died since its last use (a restarted
        server): ``first`` fails, the connection is discarded and another is
        taken (bounded), rather than checking every connection on checkout.
        """
        slow = tries = 0
        while True:
            conn = self._getconn()
            started = time.monotonic()
            try:
                return conn, first(conn)
            except Exception as exc:
                if not conn.broken and conn.info.transaction_status != 0:
                    try:
                        conn.execute("ROLLBACK")
                    except Exception:
                        pass
                self._pool.putconn(conn)
                if not is_unavailable(exc, conn):
                    raise
                # After a server restart every pooled connection fails at once:
                # those do not count; one that hung (a cut network) does.
                tries += 1
                slow += time.monotonic() - started > 1.0
                if slow >= self.attempts or tries >= self.attempts + self.max_size:
                    raise StoreUnavailableError(f"PostgreSQL is unreachable: {exc}") from exc
                logger.warning("a pooled PostgreSQL connection was dead; taking another")

    def _begin(self, user_id: str | None) -> Any:
        """A pooled connection inside a new transaction scoped to ``user_id`` (one round trip)."""
        from psycopg import ClientCursor

        def begin(conn: Any) -> None:
            # Client-side binding: BEGIN and the scope go as one simple query.
            ClientCursor(conn).execute("BEGIN; " + _SCOPE, _scope_params(user_id))

        return self._with_live_connection(begin)[0]

    def read(
        self, sql: str, params: Sequence[Any], *, user_id: str | None = None, prepared: str | None = None
    ) -> list[tuple[Any, ...]]:
        """One read statement (``%s`` placeholders) scoped to ``user_id``: one round trip.

        The scope and the statement travel as one simple query, which
        PostgreSQL runs as one implicit transaction, so the ``SET LOCAL``
        scope applies to the statement and ends with it. Parameters are
        bound client-side (psycopg's ``ClientCursor``).

        ``prepared`` is the same statement with ``$1, $2, ...`` placeholders,
        for reads every search makes: it is prepared on each connection at its
        first use and then run by name (``EXECUTE``), so the server plans it
        once per connection instead of once per call.
        """
        from psycopg import ClientCursor

        from psycopg.errors import InvalidSqlStatementName

        def go(conn: Any) -> list[tuple[Any, ...]]:
            cur = ClientCursor(conn)
            name = self._prepared_name(conn, cur, prepared) if prepared and self.prepare_reads else None
            statement = sql if name is None else f"EXECUTE {name}({', '.join(['%s'] * len(params))})"
            try:
                cur.execute(_SCOPE + "; " + statement, (*_scope_params(user_id), *params))
            except InvalidSqlStatementName:
                # Not on this server connection: a pooler in transaction mode
                # moves sessions. Session state cannot be relied on: stop preparing.
                logger.warning("a prepared statement went missing (a transaction-mode pooler?); "
                               "reads are no longer prepared")
                self.prepare_reads = False
                with self._prepared_lock:
                    self._prepared.clear()
                cur.execute(_SCOPE + "; " + sql, (*_scope_params(user_id), *params))
            cur.nextset()
            return cur.fetchall()

        conn, rows = self._with_live_connection(go)
        self._pool.putconn(conn)
        return rows

    def _prepared_name(self, conn: Any, cur: Any, statement: str) -> str | None:
        """The name ``statement`` is prepared under on ``conn``, preparing it now if needed.

        ``None`` once the connection holds ``MAX_PREPARED`` statements. A new
        connection (after a server restart, say) starts with none.
        """
        with self._prepared_lock:
            names = self._prepared.setdefault(conn, {})
            name = names.get(statement)
            if name is not None or len(names) >= MAX_PREPARED:
                return name
            name = f"pz_read_{len(names)}"
        cur.execute(f"PREPARE {name} AS {statement}")  # a failure leaves it unregistered
        with self._prepared_lock:
            names[statement] = name
        return name

    def _getconn(self) -> Any:
        import psycopg

        delay = self.backoff_s
        last: BaseException | None = None
        for attempt in range(self.attempts):
            try:
                return self._pool.getconn(timeout=self.wait_s)
            except psycopg.Error as exc:
                if not is_unavailable(exc):
                    raise
                last = exc
                logger.warning("PostgreSQL unavailable (attempt %d of %d): %s", attempt + 1, self.attempts, exc)
                if attempt + 1 < self.attempts:
                    time.sleep(delay)
                    delay *= 2
        raise StoreUnavailableError(
            f"PostgreSQL is unreachable after {self.attempts} attempts: {last}"
        ) from last

    def run(self, fn: Callable[[Any], T], *, user_id: str | None = None) -> T:
        """Run ``fn(cursor)`` in one transaction; on a lost connection, run it again (bounded)."""
        delay = self.backoff_s
        for attempt in range(self.attempts):
            try:
                with self.transaction(user_id) as cur:
                    return fn(cur)
            except StoreUnavailableError as exc:
                # Unreachable before the transaction began: already retried (bounded) in _begin.
                # Lost while committing: the outcome is unknown, so it is not run twice.
                if not getattr(exc, "rolled_back", False) or attempt + 1 >= self.attempts:
                    raise
                logger.warning("PostgreSQL transaction lost its connection; retrying (attempt %d of %d)",
                               attempt + 2, self.attempts)
            except Exception as exc:
                if not _is_retryable_race(exc) or attempt + 1 >= self.attempts:
                    raise
                logger.debug("PostgreSQL transaction lost a race; retrying")
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._pool.close()

    @property
    def closed(self) -> bool:
        return bool(self._pool.closed)
