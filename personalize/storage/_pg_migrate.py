"""Copy a SQLite data directory into PostgreSQL: every user's rows, ids kept, no re-embedding.

``personalize migrate --from ./data --to postgresql://...`` (``personalize/cli/_migrate.py``).

- **What**: users, documents, chunks with their embeddings, summaries, facts,
  memory versions, refresh state and history. Ids are kept (chunk ids are
  named by facts' and summaries' sources, refresh cursors and the vector
  indexes), so nothing is re-embedded or re-derived; the identity and
  version sequences are moved past the copied values afterwards. Derived
  indexes (FAISS shards, BM25) are not copied: each app host rebuilds its
  caches from the database on first access.
- **One user per transaction**: a user is copied completely or not at all.
  A finished user is recorded in ``meta`` under a digest of (source, user id),
  never the raw id; a second run skips them, so an interrupted migration
  resumes where it stopped.
- **Verified**: before each user's transaction commits, the rows read back
  from PostgreSQL are counted and checksummed table by table and compared with
  the source; a difference rolls the user back and stops the migration.

The destination must not already hold other data for a migrated user (a user
present there but not recorded as copied from this source is refused).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NotFoundError, StoreError

__all__ = ["MigrationReport", "migrate_sqlite_to_postgres"]

logger = logging.getLogger(__name__)

#: Table -> the columns ordering its rows for the checksum (the key within a user).
TABLES: dict[str, tuple[str, ...]] = {
    "users": ("user_id",),
    "documents": ("id",),
    "chunks": ("id",),
    "summaries": ("task",),
    "facts": ("id",),
    "memories": ("version",),
    "refresh_state": ("step",),
    "history": ("id",),
}
#: Tables whose ``id`` is an identity column in PostgreSQL (copied with OVERRIDING SYSTEM VALUE).
_IDENTITY = ("documents", "chunks", "facts", "history")
# documents.id references are deferred by order: documents before chunks.


@dataclass
class MigrationReport:
    """What a migration did: users copied now, users skipped (done by an earlier run), rows per table."""

    copied: list[str] = field(default_factory=list)
    skipped: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    verified: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"copied_users": len(self.copied), "skipped_users": self.skipped, "rows": dict(self.rows),
                "verified": self.verified}


def _canonical(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "b:" + bytes(value).hex()
    if isinstance(value, float):
        return "f:" + repr(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    return value


def _digest(rows: Sequence[Sequence[Any]]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps([_canonical(v) for v in row], ensure_ascii=False).encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


def _progress_key(source_id: str, user_id: str) -> str:
    return "migrated:" + hashlib.sha256(f"{source_id}\x1f{user_id}".encode()).hexdigest()[:32]


def migrate_sqlite_to_postgres(
    source: str | Path,
    dsn: str,
    *,
    owner_dsn: str | None = None,
    users: Sequence[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> MigrationReport:
    """Copy the data directory (or SQLite file) ``source`` into the PostgreSQL database ``dsn``.

    Args:
        source: a data directory (``personalize.sqlite3`` inside) or the SQLite file.
        dsn: the destination database; its schema is created if missing (by ``owner_dsn``).
        owner_dsn: the role owning the tables (creates the schema, moves the sequences).
        users: only these users (default: all).
        progress: called as ``progress(user_id, done, total)`` after each user.

    Raises:
        NotFoundError: no SQLite store at ``source``.
        ConfigError: the destination holds another embedder's vectors, or a
            user that this source did not put there.
        StoreError: a verification mismatch (that user was rolled back).
    """
    from .postgres import PostgresStore
    from .sqlite import SQLiteStore

    path = Path(source)
    if path.is_dir():
        path = path / "personalize.sqlite3"
    if not path.exists():
        raise NotFoundError(f"no SQLite store at {source}")
    SQLiteStore(path).close()  # brings an older data directory to the current schema first
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    source_id = f"{path.resolve()}:{_source_stamp(src)}"
    dst = PostgresStore(dsn, owner_dsn=owner_dsn)
    report = MigrationReport()
    try:
        _copy_embedder(src, dst)
        columns = {t: _common_columns(src, dst, t) for t in TABLES}
        wanted = list(users) if users is not None else [
            r[0] for r in src.execute("SELECT user_id FROM users ORDER BY user_id")]
        for n, user_id in enumerate(wanted, 1):
            key = _progress_key(source_id, user_id)
            if dst.get_meta(key) is not None:
                report.skipped += 1
            else:
                counts = _copy_user(src, dst, user_id, columns, key)
                report.copied.append(user_id)
                for table, count in counts.items():
                    report.rows[table] = report.rows.get(table, 0) + count
            if progress is not None:
                progress(user_id, n, len(wanted))
        _advance_sequences(dst, owner_dsn or dsn)
        report.verified = True
        return report
    finally:
        src.close()
        dst.close()


def _source_stamp(src: sqlite3.Connection) -> str:
    """Identifies the source store across runs (its creation, not its path alone)."""
    row = src.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
    first = src.execute("SELECT MIN(created_at) FROM users").fetchone()
    return hashlib.sha256(f"{row[0] if row else ''}|{first[0] if first else ''}".encode()).hexdigest()[:16]


def _copy_embedder(src: sqlite3.Connection, dst: Any) -> None:
    row = src.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
    if row is None:
        return
    stored = json.loads(row[0])
    dst.check_embedder(stored["name"], stored["dim"], stored.get("backend", "torch-fp32"))


def _common_columns(src: sqlite3.Connection, dst: Any, table: str) -> list[str]:
    have = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
    target = {r[0] for r in dst.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = 'public'",
        (table,))}
    missing = [c for c in have if c not in target]
    if missing:
        raise StoreError(f"the PostgreSQL schema lacks {table} columns {missing}; upgrade personalize")
    return have


def _copy_user(
    src: sqlite3.Connection, dst: Any, user_id: str, columns: dict[str, list[str]], key: str
) -> dict[str, int]:
    counts: dict[str, int] = {}
    with dst._db.transaction(user_id) as cur:
        if cur.execute("SELECT 1 FROM users WHERE user_id = %s", (user_id,)).fetchone():
            raise ConfigError(
                "a user being migrated already has data in the destination database "
                "(not copied from this source); forget them there first or migrate into an empty database"
            )
        for table, order in TABLES.items():
            cols = columns[table]
            order_sql = ", ".join(order)
            rows = src.execute(
                f"SELECT {', '.join(cols)} FROM {table} WHERE user_id = ? ORDER BY {order_sql}", (user_id,)
            ).fetchall()
            counts[table] = len(rows)
            if rows:
                overriding = " OVERRIDING SYSTEM VALUE" if table in _IDENTITY else ""
                cur.executemany(
                    f"INSERT INTO {table} ({', '.join(cols)}){overriding} VALUES ({', '.join(['%s'] * len(cols))})",
                    [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows],
                )
            back = cur.execute(
                f"SELECT {', '.join(cols)} FROM {table} WHERE user_id = %s ORDER BY {order_sql}", (user_id,)
            ).fetchall()
            if len(back) != len(rows) or _digest(back) != _digest(rows):
                raise StoreError(
                    f"migration check failed for table {table} ({len(rows)} rows in the source, {len(back)} copied); "
                    "this user was rolled back"
                )
        cur.execute(
            "INSERT INTO meta (key, value) VALUES (%s, %s)",
            (key, json.dumps({"rows": counts, "checksum": "sha256"}, sort_keys=True)),
        )
    return counts


def _advance_sequences(dst: Any, owner_dsn: str) -> None:
    """Move identity and version sequences past every copied value (needs the owner role)."""
    import psycopg

    with psycopg.connect(owner_dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT set_config('personalize.scope', 'admin', true)")
        for table in _IDENTITY:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), "
                f"(SELECT last_value FROM {table}_id_seq)), true)"
            )
        conn.execute(
            "SELECT setval('pz_data_clock', GREATEST((SELECT COALESCE(MAX(data_version), 0) FROM users), "
            "(SELECT last_value FROM pz_data_clock), 1), true)"
        )
