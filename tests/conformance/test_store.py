"""One conformance suite for every store engine (SQLite, PostgreSQL): the SQLStore contract."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from personalize.errors import ConfigError, ConflictError, NotFoundError
from personalize.storage import NewDocument, content_hash
from personalize.storage._tables import USER_TABLES
from personalize.types import LoadedItem

DIM = 8


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A fresh store of each engine (PostgreSQL: as the non-owner app role, row-level security on)."""
    if request.param == "sqlite":
        from personalize.storage import SQLiteStore

        s = SQLiteStore(tmp_path / "store.sqlite3")
    else:
        pytest.importorskip("psycopg")
        from personalize.storage.postgres import PostgresStore

        db = request.getfixturevalue("pg_database")
        PostgresStore(db.app_dsn, owner_dsn=db.owner_dsn).close()
        s = PostgresStore(db.app_dsn)
    yield s
    s.close()


def _doc(text: str, *, external_id: str | None = None, metadata: dict | None = None, kind: str = "document",
         session: str | None = None, ts: datetime | None = None, chunks: int = 1, seed: int = 0) -> NewDocument:
    item = LoadedItem(text=text, kind=kind, external_id=external_id, metadata=metadata or {}, session=session,
                      timestamp=ts, role="user" if kind == "message" else None)
    parts = [f"{text} [{i}]" for i in range(chunks)]
    vectors = np.random.default_rng(seed).normal(size=(chunks, DIM)).astype(np.float32)
    return NewDocument(item=item, digest=content_hash(item), chunks=parts, embeddings=vectors)


def test_write_read_roundtrip_keeps_text_embeddings_and_metadata(store):
    doc = _doc("Ana keeps bees", external_id="bees", metadata={"project": "garden", "year": 2024}, chunks=3)
    result = store.add_documents("ana", [doc])
    assert len(result.document_ids) == 1 and len(result.chunk_ids) == 3
    ids, vectors = store.all_embeddings("ana")
    assert ids.tolist() == sorted(result.chunk_ids)
    assert vectors.tobytes() == doc.embeddings.tobytes()  # bit-exact float32
    chunks = store.chunks("ana", ids.tolist())
    assert [chunks[i].text for i in ids] == list(doc.chunks)
    assert chunks[ids[0]].metadata == {"project": "garden", "year": 2024}
    item = store.get_item("ana", "bees")
    assert item.text == "Ana keeps bees" and item.chunks == 3 and item.metadata["year"] == 2024
    assert store.chunks("bob", ids.tolist()) == {}  # another user's ids are never returned
    assert store.users() == ["ana"] and store.has_user("ana") and not store.has_user("bob")


def test_duplicates_skip_and_caller_ids_replace(store):
    first = store.add_documents("ana", [_doc("same text")])
    again = store.add_documents("ana", [_doc("same text")])
    assert len(again.document_ids) == 0
    store.add_documents("ana", [_doc("v1", external_id="x")])
    replaced = store.add_documents("ana", [_doc("v2", external_id="x")])
    assert replaced.replaced == 1
    assert store.get_item("ana", "x").text == "v2"
    with pytest.raises(ConflictError):
        store.add_documents("ana", [_doc("v3", external_id="x")], on_conflict="error")
    assert store.get_item("ana", "x").text == "v2"  # the failed call wrote nothing
    assert len(first.document_ids) == 1


def test_versions_never_repeat_across_changes_and_incarnations(store):
    seen = []
    store.add_documents("ana", [_doc("one", external_id="1")])
    seen.append(store.data_version("ana"))
    store.add_documents("ana", [_doc("two", external_id="2")])
    seen.append(store.data_version("ana"))
    doc_ids = store.select_document_ids("ana", keys=["1"])
    store.delete_documents("ana", doc_ids)
    seen.append(store.data_version("ana"))
    store.delete_user("ana")
    assert store.data_version("ana") == 0 and not store.has_user("ana")
    store.add_documents("ana", [_doc("one", external_id="1")])  # a new incarnation, same content
    seen.append(store.data_version("ana"))
    assert len(set(seen)) == 4 and seen == sorted(seen)


def test_delete_user_leaves_no_row_in_any_user_table(store):
    store.add_documents("ana", [_doc("ana's", chunks=2)])
    store.add_documents("bob", [_doc("bob's")])
    store.delete_user("ana")
    for table in USER_TABLES:
        assert store.query(f"SELECT COUNT(*) FROM {table} WHERE user_id = ?", ("ana",))[0][0] == 0, table
    assert store.users() == ["bob"]


@pytest.mark.parametrize(("where", "expected"), [
    ({"project": "a"}, {"d1", "d3"}),
    ({"project": {"$ne": "a"}}, {"d2", "d4"}),              # $ne keeps items without the field
    ({"year": {"$gte": 2024}}, {"d2", "d3"}),
    ({"year": {"$lt": 2024}}, {"d1"}),
    ({"project": {"$in": ["b", "zzz"]}}, {"d2"}),
    ({"project": {"$nin": ["a"]}}, {"d2", "d4"}),
    ({"done": True}, {"d3"}),
    ({"$or": [{"project": "b"}, {"year": 2023}]}, {"d1", "d2"}),
    ({"$and": [{"project": "a"}, {"year": {"$gt": 2023}}]}, {"d3"}),
    ({"score": {"$lte": 0.5}}, {"d4"}),
])
def test_metadata_filters_mean_the_same_on_every_engine(store, where, expected):
    store.add_documents("ana", [
        _doc("one", external_id="d1", metadata={"project": "a", "year": 2023}),
        _doc("two", external_id="d2", metadata={"project": "b", "year": 2025}),
        _doc("three", external_id="d3", metadata={"project": "a", "year": 2024, "done": True}),
        _doc("four", external_id="d4", metadata={"score": 0.25}),
    ])
    items = store.list_items("ana", where=where, limit=10).items
    assert {i.external_id for i in items} == expected
    assert len(store.filtered_chunk_ids("ana", where=where)) == len(expected)


def test_listing_pages_in_id_order_and_filters_by_time_kind_and_session(store):
    t0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
    docs = [_doc(f"msg {i}", kind="message", session="s1" if i % 2 else "s2",
                 ts=t0.replace(day=1 + i), external_id=f"m{i}") for i in range(7)]
    store.add_documents("ana", docs + [_doc("a document")])
    seen, cursor = [], None
    while True:
        page = store.list_items("ana", limit=3, cursor=cursor)
        seen += [i.id for i in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == 8
    assert len(store.list_items("ana", kinds=["message"], limit=50).items) == 7
    assert len(store.list_items("ana", sessions=["s1"], limit=50).items) == 3
    since = store.list_items("ana", since=t0.replace(day=4), until=t0.replace(day=6), limit=50).items
    assert [i.external_id for i in since] == ["m3", "m4"]
    assert {(s.session, s.messages) for s in store.sessions("ana")} == {("s1", 3), ("s2", 4)}


def test_reads_in_batches_above_the_engines_parameter_limit(store):
    store.add_documents("ana", [_doc(f"doc {i}", seed=i) for i in range(30)])
    ids = store.chunk_ids("ana")
    wanted = list(ids) + list(range(10**6, 10**6 + store.in_batch + 7))  # more than one batch
    got, _ = store.embeddings("ana", wanted)
    assert sorted(got.tolist()) == sorted(ids.tolist())


def test_history_records_changes_without_text(store):
    store.add_documents("ana", [_doc("private words", external_id="p")])
    store.delete_documents("ana", store.select_document_ids("ana", keys=["p"]))
    changes = store.history("ana")
    assert [c.operation for c in changes][-1] == "delete"
    assert all("private" not in str(c.detail) for c in changes)


def test_embedder_is_recorded_and_a_different_one_refused(store):
    store.check_embedder("model-a", DIM, "torch-fp32")
    store.check_embedder("model-a", DIM, "torch-fp32")
    with pytest.raises(ConfigError, match="model-a"):
        store.check_embedder("model-b", DIM, "torch-fp32")


def test_stats_and_unknown_users(store):
    store.add_documents("ana", [_doc("one", chunks=2), _doc("two", kind="message", session="s")])
    stats = store.stats("ana")
    assert (stats["documents"], stats["messages"], stats["chunks"], stats["sessions"]) == (1, 1, 3, 1)
    with pytest.raises(NotFoundError):
        store.stats("nobody")
    with pytest.raises(NotFoundError):
        store.get_item("ana", "missing")


def test_a_user_lock_is_exclusive(store):
    with store.user_lock("ana", "refresh", wait=False) as first:
        assert first
        with store.user_lock("ana", "refresh", wait=False) as second:
            assert not second  # held (by another connection / file handle): skip
    with store.user_lock("ana", "refresh", wait=False) as again:
        assert again  # released
