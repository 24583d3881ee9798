"""The SQLite schema, as versioned migrations applied on open.

Vector and BM25 indexes are derived from these tables. Every table that holds
personal data has a ``user_id`` column and is listed in ``USER_TABLES`` so that
``forget`` can never miss one. ``MIGRATIONS[n - 1]`` takes a database from
schema version ``n - 1`` to ``n``; a database newer than the library is refused.
The PostgreSQL schema (``_postgres_schema.py``) mirrors these tables.
"""

from __future__ import annotations

from ._tables import USER_TABLES

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "USER_TABLES"]

# Version 1: the first wave's schema (it was created with IF NOT EXISTS and
# recorded as version 1, so existing data directories start from here).
_V1 = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    user_id      TEXT PRIMARY KEY,
    created_at   REAL NOT NULL,
    data_version INTEGER NOT NULL DEFAULT 0
);
-- AUTOINCREMENT: ids of deleted rows are never handed out again, so a chunk id
-- (held by vector indexes, facts' sources, refresh cursors) names one chunk forever.
CREATE TABLE IF NOT EXISTS documents (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    source       TEXT NOT NULL,
    external_id  TEXT,
    content_hash TEXT NOT NULL,
    role         TEXT,
    speaker      TEXT,
    session      TEXT,
    timestamp    REAL,
    metadata     TEXT NOT NULL DEFAULT '{}',
    created_at   REAL NOT NULL,
    UNIQUE (user_id, content_hash)
);
CREATE INDEX IF NOT EXISTS documents_by_session ON documents (user_id, session, timestamp, id);
CREATE TABLE IF NOT EXISTS chunks (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id   TEXT NOT NULL,
    doc_id    INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    text      TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_user ON chunks (user_id, id);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks (doc_id, position);

-- Offline knowledge (summaries, persona facts, agentic memory) -----------------
CREATE TABLE IF NOT EXISTS summaries (
    user_id      TEXT NOT NULL,
    task         TEXT NOT NULL,
    text         TEXT NOT NULL,
    sources      TEXT NOT NULL DEFAULT '[]',   -- JSON list of chunk ids
    generator    TEXT NOT NULL,                -- model name or 'extractive'
    data_version INTEGER NOT NULL,
    created_at   REAL NOT NULL,
    PRIMARY KEY (user_id, task)
);
CREATE TABLE IF NOT EXISTS facts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       TEXT NOT NULL,
    text          TEXT NOT NULL,
    category      TEXT NOT NULL,
    subject       TEXT NOT NULL,               -- normalized key used for supersession
    polarity      INTEGER NOT NULL DEFAULT 1,
    quote         TEXT,                        -- the user's own words, when known
    confidence    REAL NOT NULL,
    sources       TEXT NOT NULL DEFAULT '[]',  -- JSON list of chunk ids
    generator     TEXT NOT NULL,
    valid_from    REAL,
    valid_to      REAL,
    superseded_by INTEGER,
    embedding     BLOB,
    created_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS facts_current ON facts (user_id, superseded_by, subject);
-- A per-user stamp of the facts, moved by triggers on every insert, update and
-- delete: query-time caches of a user's facts compare one primary-key row
-- instead of scanning the facts (and see writes by any process or code path).
-- The stamp comes from a global clock, so it never repeats for a user, not even
-- after forget() deletes the user's stamp with the rest of their rows.
CREATE TABLE IF NOT EXISTS clocks (
    name TEXT PRIMARY KEY,
    tick INTEGER NOT NULL
);
INSERT OR IGNORE INTO clocks (name, tick) VALUES ('facts', 0);
CREATE TABLE IF NOT EXISTS fact_versions (
    user_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS facts_stamp_insert AFTER INSERT ON facts BEGIN
    UPDATE clocks SET tick = tick + 1 WHERE name = 'facts';
    INSERT INTO fact_versions (user_id, version) VALUES (NEW.user_id, (SELECT tick FROM clocks WHERE name = 'facts'))
        ON CONFLICT (user_id) DO UPDATE SET version = excluded.version;
END;
CREATE TRIGGER IF NOT EXISTS facts_stamp_update AFTER UPDATE ON facts BEGIN
    UPDATE clocks SET tick = tick + 1 WHERE name = 'facts';
    INSERT INTO fact_versions (user_id, version) VALUES (NEW.user_id, (SELECT tick FROM clocks WHERE name = 'facts'))
        ON CONFLICT (user_id) DO UPDATE SET version = excluded.version;
END;
CREATE TRIGGER IF NOT EXISTS facts_stamp_delete AFTER DELETE ON facts BEGIN
    UPDATE clocks SET tick = tick + 1 WHERE name = 'facts';
    INSERT INTO fact_versions (user_id, version) VALUES (OLD.user_id, (SELECT tick FROM clocks WHERE name = 'facts'))
        ON CONFLICT (user_id) DO UPDATE SET version = excluded.version;
END;
CREATE TABLE IF NOT EXISTS memories (
    user_id      TEXT NOT NULL,
    version      INTEGER NOT NULL,
    text         TEXT NOT NULL,
    generator    TEXT NOT NULL,
    data_version INTEGER NOT NULL,
    created_at   REAL NOT NULL,
    PRIMARY KEY (user_id, version)
);
CREATE TABLE IF NOT EXISTS refresh_state (
    user_id    TEXT NOT NULL,
    step       TEXT NOT NULL,                  -- 'persona', 'memory', 'summary:<task>'
    cursor     INTEGER NOT NULL DEFAULT 0,     -- last chunk id consumed
    status     TEXT NOT NULL,                  -- 'ok' | 'failed'
    error      TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    seen       INTEGER NOT NULL DEFAULT 0,     -- chunks with id <= cursor when it was set
    mark       TEXT NOT NULL DEFAULT '',       -- hash of the cursor chunk's text (detects id reuse)
    updated_at REAL NOT NULL,
    PRIMARY KEY (user_id, step)
);
"""

# Version 2: items managed one by one.
# - documents.text keeps an item's full text (get() returns it exactly; chunks overlap);
#   documents.updated_at and .call: when and by which ingest call it was written
#   (a replace removes the earlier version written by another call).
# - history: every change of a user's data (what, when, which call); no user text.
# - clocks 'data': the global tick every data_version is drawn from, so a version
#   never repeats, not even for a user forgotten and written again (a derived
#   index of the old incarnation can never look current).
_V2 = """
ALTER TABLE documents ADD COLUMN text TEXT;
ALTER TABLE documents ADD COLUMN updated_at REAL;
ALTER TABLE documents ADD COLUMN call TEXT;
CREATE INDEX IF NOT EXISTS documents_by_external ON documents (user_id, external_id);
CREATE TABLE IF NOT EXISTS history (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id   TEXT NOT NULL,
    at        REAL NOT NULL,
    operation TEXT NOT NULL,
    call      TEXT NOT NULL,
    target    TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS history_by_user ON history (user_id, id);
INSERT INTO clocks (name, tick) SELECT 'data', COALESCE(MAX(data_version), 0) FROM users
    WHERE NOT EXISTS (SELECT 1 FROM clocks WHERE name = 'data');
"""

MIGRATIONS = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)
