"""SQLite, the embedded default engine: one file per data directory.

One connection per process, guarded by a lock (SQLite serializes writers
anyway); WAL mode so readers never block the writer; ``busy_timeout`` so that
several processes can share one data directory. ``secure_delete`` is on and
deletes end with a WAL checkpoint and ``VACUUM``, so that deleted text is
overwritten rather than left in free pages or old WAL frames.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ._sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from .base import SQLStore

__all__ = ["SQLiteStore"]

# SQLite's comparison of one JSON field; json_extract returns SQL values
# (numbers as numbers, true as 1), so Python parameters compare naturally.
_OPS = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _statements(script: str) -> Iterator[str]:
    """The statements of a script (triggers' inner semicolons included)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()


class SQLiteStore(SQLStore):
    """The SQLite database of one data directory.

    Args:
        path: the SQLite file (its folder is created).
    """

    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._closed = False
        try:
            self._conn = sqlite3.connect(
                str(self.path), timeout=60.0, check_same_thread=False, isolation_level=None
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.execute("PRAGMA busy_timeout=60000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
        self._lock_dir = self.path.parent / "locks"

    # ------------------------------------------------------------- migrations
    def _migrate(self) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION`, one migration per transaction."""
        self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        while True:
            with self.transaction() as cur:
                row = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                current = int(row[0]) if row else 0
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"the store at {self.path} has schema version {current}, newer than this library "
                        f"understands ({SCHEMA_VERSION}); upgrade personalize to open it"
                    )
                if current == SCHEMA_VERSION:
                    return
                for statement in _statements(MIGRATIONS[current]):
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(current + 1),),
                )

    # ---------------------------------------------------------------- plumbing
    @contextmanager
    def transaction(self, user_id: str | None = None) -> Iterator[sqlite3.Cursor]:
        """A write transaction (``BEGIN IMMEDIATE``): all or nothing."""
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")

    def own_by_id(self, alias: str) -> str:
        # Without ANALYZE statistics SQLite takes an index on user_id for
        # "user_id = ? AND id IN (...)" and reads all of the user's rows (7 ms at
        # 10k turns, measured); a unary + keeps user_id out of the index choice.
        return f"+{alias}.user_id = ?"

    def query(
        self, sql: str, params: Sequence[Any] = (), *, user_id: str | None = None, prepared: bool = False
    ) -> list[tuple[Any, ...]]:
        # (sqlite3 keeps every recent statement compiled: ``prepared`` changes nothing here.)
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            return self._conn.execute(sql, params).fetchall()

    def _next_version(self, cur: Any) -> int:
        return int(cur.execute("UPDATE clocks SET tick = tick + 1 WHERE name = 'data' RETURNING tick").fetchone()[0])

    def _json_filter(self, column: str, key: str, op: str, value: Any) -> tuple[str, list[Any]]:
        path = '$."' + key + '"'
        field = f"json_extract({column}, ?)"
        if op in ("$in", "$nin"):
            marks = ",".join("?" * len(value))
            if op == "$in":
                return f"{field} IN ({marks})", [path, *value]
            return f"({field} IS NULL OR {field} NOT IN ({marks}))", [path, path, *value]
        if op == "$ne":
            return f"({field} IS NULL OR {field} <> ?)", [path, path, value]
        return f"{field} {_OPS[op]} ?", [path, value]

    def _scrub_deleted(self) -> None:
        with self._lock:
            # secure_delete zeroed the freed pages in the WAL frames; checkpoint so
            # the main file gets them and truncate the WAL, then VACUUM to drop
            # any stale copy (e.g. in an index b-tree page that got rebalanced).
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def user_lock(self, user_id: str, name: str, *, wait: bool | None = True) -> Iterator[bool]:
        """An ``flock`` on the user's lock file (named by a hash of the id, removed by ``delete_user``)."""
        from .._ids import user_dir_name

        self._lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_dir / f"{user_dir_name(user_id)}.{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait or wait is None else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def delete_user(self, user_id: str) -> None:
        super().delete_user(user_id)
        from .._ids import user_dir_name

        for lock in self._lock_dir.glob(f"{user_dir_name(user_id)}.*.lock"):
            lock.unlink(missing_ok=True)

    def close(self) -> None:
        """Checkpoint the WAL and close (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError:  # another process holds it: fine
                pass
            self._conn.close()

    def describe(self) -> dict[str, Any]:
        """Engine, file and schema version (for ``personalize info`` and logs)."""
        return {"engine": self.dialect, "path": str(self.path),
                "schema_version": int(self.get_meta("schema_version") or 0)}
