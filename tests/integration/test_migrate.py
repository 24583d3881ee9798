"""``personalize migrate``: a SQLite data directory copied into PostgreSQL, resumable and verified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("psycopg")

from personalize import Personalizer  # noqa: E402
from personalize.storage import _pg_migrate  # noqa: E402
from personalize.storage._pg_migrate import migrate_sqlite_to_postgres  # noqa: E402
from personalize.testing import HashingEmbedder  # noqa: E402


def _chat(sample_data: Path, name: str) -> list[dict]:
    return json.loads((sample_data / "alice" / "chats" / name).read_text())["messages"]


@pytest.fixture
def source(tmp_path: Path, sample_data: Path) -> Path:
    """A data directory with three users: documents, chats, facts, summaries, memory, history."""
    path = tmp_path / "data"
    with Personalizer.open(path, embedder=HashingEmbedder()) as p:
        p.add_messages("alice", _chat(sample_data, "assistant-2024.json"), session="s1")
        p.add_messages("alice", _chat(sample_data, "assistant-2025.json"), session="s2")
        p.add_documents("alice", ["Alice's flat is on Rua das Flores, third floor."], ids=["flat"],
                        metadata={"project": "home", "year": 2024})
        p.add_documents("bob", ["Bob is allergic to peanuts.", "Bob rides a cargo bike."], ids=["a", "b"])
        p.add_documents("carol", ["Carol plays the cello on Sundays."])
        p.documents.delete("bob", ids=["b"])  # a delete in the history, a gap in the ids
        p.refresh("alice", tasks=["chat"])
        p.facts.add("bob", "Avoids peanuts", category="preference")
    return path


def _snapshot(p: Personalizer, user: str) -> dict:
    export = p.export(user)
    export.pop("exported_at", None)
    return {
        "export": json.loads(json.dumps(export, default=str, sort_keys=True)),
        "version": p.store.data_version(user),
        "search": [(h.chunk.id, round(h.score, 4)) for h in p.search(user, "what does the user like", k=5)],
    }


def test_migrate_copies_every_user_exactly_and_resumes(source: Path, pg_database, tmp_path, monkeypatch):
    with Personalizer.open(source, embedder=HashingEmbedder()) as p:
        users = p.users()
        before = {u: _snapshot(p, u) for u in users}
    assert users == ["alice", "bob", "carol"]

    # Interrupted after the first user: that user is committed, the next one is not half there.
    real = _pg_migrate._copy_user
    calls = []

    def flaky(src, dst, user_id, columns, key):
        calls.append(user_id)
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return real(src, dst, user_id, columns, key)

    monkeypatch.setattr(_pg_migrate, "_copy_user", flaky)
    with pytest.raises(RuntimeError, match="interrupted"):
        migrate_sqlite_to_postgres(source, pg_database.app_dsn, owner_dsn=pg_database.owner_dsn)
    monkeypatch.setattr(_pg_migrate, "_copy_user", real)

    report = migrate_sqlite_to_postgres(source, pg_database.app_dsn, owner_dsn=pg_database.owner_dsn)
    assert report.verified and report.skipped == 1 and report.copied == ["bob", "carol"]
    again = migrate_sqlite_to_postgres(source, pg_database.app_dsn, owner_dsn=pg_database.owner_dsn)
    assert again.copied == [] and again.skipped == 3

    with Personalizer.open(pg_database.app_dsn, embedder=HashingEmbedder(), cache_dir=tmp_path / "cache") as q:
        assert q.users() == users
        after = {u: _snapshot(q, u) for u in users}
        assert after == before  # same rows, ids, versions, facts, summaries, memory, history; same search
        # New writes get ids and versions past every copied one.
        old_max = max(i.id for i in q.documents.list("alice", limit=500).items)
        added = q.add_documents("alice", ["Alice adopted a grey cat."], ids=["cat"])
        assert min(added.document_ids) > old_max
        assert q.store.data_version("alice") > max(s["version"] for s in before.values())


def test_migrate_refuses_a_user_it_did_not_copy(source: Path, pg_database, tmp_path):
    from personalize.errors import ConfigError

    with Personalizer.open(pg_database.app_dsn, embedder=HashingEmbedder(), cache_dir=tmp_path / "c",
                           store=_owner_store(pg_database)) as q:
        q.add_documents("carol", ["Carol already lives in the database."])
    with pytest.raises(ConfigError, match="already has data"):
        migrate_sqlite_to_postgres(source, pg_database.app_dsn, owner_dsn=pg_database.owner_dsn, users=["carol"])


def _owner_store(db):
    from personalize.storage.postgres import PostgresStore

    PostgresStore(db.app_dsn, owner_dsn=db.owner_dsn).close()
    return PostgresStore(db.app_dsn)


def test_cli_migrate(source: Path, pg_database, capsys):
    import argparse

    from personalize.cli import _migrate

    parser = argparse.ArgumentParser()
    _migrate.register(parser.add_subparsers())
    args = parser.parse_args(["migrate", "--from", str(source), "--to", pg_database.app_dsn,
                              "--owner-dsn", pg_database.owner_dsn, "--json"])
    assert args.handler(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["copied_users"] == 3 and out["verified"] and out["rows"]["chunks"] > 30
