"""PostgresStore on a real PostgreSQL: row-level security, migrations, locks, a lost server."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("psycopg")

from personalize.errors import StoreError  # noqa: E402
from personalize.storage._pg_conn import StoreUnavailableError  # noqa: E402
from personalize.storage.postgres import PostgresStore  # noqa: E402


@pytest.fixture
def pg_store(pg_database):
    store = PostgresStore(pg_database.app_dsn, owner_dsn=pg_database.owner_dsn)
    yield store
    store.close()


def _write_chunk(store: PostgresStore, user: str, text: str) -> None:
    with store.transaction(user) as cur:
        store.bump_version(cur, user)
        doc = cur.execute(
            "INSERT INTO documents (user_id, kind, source, content_hash, metadata, created_at, text) "
            "VALUES (?, 'document', 'test', ?, '{}', 0, ?) RETURNING id", (user, text, text),
        ).fetchone()[0]
        cur.execute("INSERT INTO chunks (user_id, doc_id, position, text, embedding) VALUES (?, ?, 0, ?, ?)",
                    (user, doc, text, b"\x00" * 8))


def test_a_query_that_forgot_where_user_id_reads_only_the_scoped_user(pg_store, pg_database):
    _write_chunk(pg_store, "alice", "alice's secret")
    _write_chunk(pg_store, "bob", "bob's secret")
    # On purpose: no WHERE user_id. Row-level security still confines the read.
    assert pg_store.query("SELECT user_id, text FROM chunks", user_id="alice") == [("alice", "alice's secret")]
    assert pg_store.query("SELECT user_id FROM users", user_id="bob") == [("bob",)]
    # Nor can a scoped transaction write or delete another user's rows.
    with pg_store.transaction("alice") as cur:
        assert cur.execute("DELETE FROM chunks").rowcount == 1  # alice's only
    assert pg_store.query("SELECT text FROM chunks", user_id="bob") == [("bob's secret",)]
    import psycopg

    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with pg_store.transaction("alice") as cur:
            cur.execute("INSERT INTO users (user_id, created_at) VALUES ('mallory', 0)")
    # The app role owns none of the tables (so it cannot turn the policies off).
    owners = {r[0] for r in pg_store.query("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
    assert "pz_app" not in owners
    # The admin scope (listing users) sees everyone.
    assert pg_store.users() == ["alice", "bob"]


def test_a_prepared_read_is_scoped_at_each_run_and_bounded_per_connection(pg_store):
    """A hot read is planned once per connection and run by name: the plan is shared by every
    user, the row-level security scope is not; past the per-connection bound reads go unprepared."""
    from personalize.storage._pg_conn import MAX_PREPARED

    _write_chunk(pg_store, "alice", "alice's secret")
    _write_chunk(pg_store, "bob", "bob's secret")
    no_where = "SELECT user_id, text FROM chunks WHERE text <> ?"
    for _ in range(3):  # prepared at the first run, then executed by name, the scope set each time
        assert pg_store.query(no_where, ("-",), user_id="alice", prepared=True) == [("alice", "alice's secret")]
        assert pg_store.query(no_where, ("-",), user_id="bob", prepared=True) == [("bob", "bob's secret")]
    held = list(pg_store._db._prepared.values())
    assert held and all(no_where.replace("?", "$1") in statements for statements in held)
    for n in range(MAX_PREPARED + 5):  # more distinct statements than one connection keeps
        assert pg_store.query(f"SELECT ? + {n}", (1,), user_id="alice", prepared=True) == [(1 + n,)]
    assert all(len(held) <= MAX_PREPARED for held in pg_store._db._prepared.values())


def test_a_prepared_statement_gone_from_the_session_turns_preparing_off(pg_store):
    """What a transaction-mode pooler does (another server session, without our statements):
    the read still answers, unprepared, and the store stops preparing."""
    _write_chunk(pg_store, "alice", "alice's note")
    sql = "SELECT text FROM chunks WHERE text <> ?"
    assert pg_store.query(sql, ("-",), user_id="alice", prepared=True) == [("alice's note",)]
    for conn in list(pg_store._db._prepared):
        conn.execute("DEALLOCATE ALL")  # behind the store's back, on its idle pooled connections
    for _ in range(pg_store._db.max_size + 1):  # the pool hands its connections out in turn
        assert pg_store.query(sql, ("-",), user_id="alice", prepared=True) == [("alice's note",)]
    assert pg_store._db.prepare_reads is False
    assert pg_store.query(sql, ("-",), user_id="alice", prepared=True) == [("alice's note",)]
    assert not any(pg_store._db._prepared.values())


def test_chunks_at_version_reads_rows_and_version_in_one_snapshot(pg_store):
    _write_chunk(pg_store, "alice", "one")
    _write_chunk(pg_store, "bob", "two")
    alice_ids = [r[0] for r in pg_store.query("SELECT id FROM chunks WHERE user_id = ?", ("alice",), user_id="alice")]
    bob_ids = [r[0] for r in pg_store.query("SELECT id FROM chunks WHERE user_id = ?", ("bob",), user_id="bob")]
    chunks, version = pg_store.chunks_at_version("alice", alice_ids + bob_ids)
    assert [c.text for c in chunks.values()] == ["one"] and version == pg_store.data_version("alice") > 0
    assert pg_store.chunks_at_version("alice", bob_ids) == ({}, version)  # none of hers: still the version
    assert pg_store.chunks_at_version("carol", alice_ids) == ({}, 0)  # no such user


def test_facts_stamp_trigger_moves_per_user_and_never_repeats(pg_store):
    def stamp(user: str) -> int | None:
        rows = pg_store.query("SELECT version FROM fact_versions WHERE user_id = ?", (user,), user_id=user)
        return rows[0][0] if rows else None

    seen = []
    for text in ("likes tea", "likes coffee"):
        with pg_store.transaction("carol") as cur:
            cur.execute("INSERT INTO facts (user_id, text, category, subject, confidence, generator, created_at) "
                        "VALUES ('carol', ?, 'preference', 'drink', 1, 'manual', 0)", (text,))
        seen.append(stamp("carol"))
    with pg_store.transaction("carol") as cur:
        cur.execute("DELETE FROM facts WHERE user_id = 'carol'")
    seen.append(stamp("carol"))
    assert len(set(seen)) == 3 and seen == sorted(seen)


def test_versions_are_global_and_concurrent_writers_of_one_user_serialize(pg_store):
    versions: list[int] = []
    lock = threading.Lock()

    def writer() -> None:
        for _ in range(10):
            with pg_store.transaction("dave") as cur:
                v = pg_store.bump_version(cur, "dave")
            with lock:
                versions.append(v)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(versions)) == 40
    assert pg_store.data_version("dave") == max(versions)


def test_a_database_newer_than_the_library_is_refused(pg_store, pg_database):
    import psycopg

    with psycopg.connect(pg_database.owner_dsn, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer than this library"):
        PostgresStore(pg_database.app_dsn, owner_dsn=pg_database.owner_dsn)


def test_the_app_role_alone_cannot_create_the_schema(pg_database):
    with pytest.raises(StoreError, match="owner_dsn"):
        PostgresStore(pg_database.app_dsn)


def test_user_lock_is_shared_across_stores(pg_store, pg_database):
    other = PostgresStore(pg_database.app_dsn)  # another "host"
    try:
        with pg_store.user_lock("erin", "refresh", wait=False) as got:
            assert got
            with other.user_lock("erin", "refresh", wait=False) as second:
                assert not second  # skip: someone else refreshes erin
            with other.user_lock("frank", "refresh", wait=False) as third:
                assert third  # another user is free
        with other.user_lock("erin", "refresh", wait=False) as again:
            assert again  # released
        # wait=True blocks until the holder lets go.
        order = []
        with pg_store.user_lock("erin", "refresh", wait=True):
            t = threading.Thread(target=lambda: (other.user_lock("erin", "refresh", wait=True).__enter__(),
                                                 order.append("second")))
            t.start()
            time.sleep(0.3)
            order.append("first")
        t.join(10)
        assert order == ["first", "second"]
    finally:
        other.close()


@pytest.fixture
def own_server():
    """A server of this test's own, to stop and start."""
    from _postgres import running_server

    with running_server() as server:
        yield server


def test_a_lost_server_is_a_clear_error_and_the_store_recovers(own_server):
    db = own_server.create_database()
    store = PostgresStore(db.app_dsn, owner_dsn=db.owner_dsn, attempts=2, wait_s=1.0)
    try:
        _write_chunk(store, "gina", "before")
        version = store.data_version("gina")
        # Mid-transaction: the server dies after the first statement.
        with pytest.raises(StoreUnavailableError):
            with store.transaction("gina") as cur:
                store.bump_version(cur, "gina")
                cur.execute("UPDATE chunks SET text = 'during' WHERE user_id = 'gina'")
                own_server.stop("immediate")
                cur.execute("SELECT 1")
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="unreachable"):
            store.data_version("gina")
        assert time.monotonic() - started < 15  # bounded
        own_server.start()
        assert store.query("SELECT text FROM chunks", user_id="gina") == [("before",)]
        assert store.data_version("gina") == version  # nothing of the interrupted transaction
    finally:
        store.close()
