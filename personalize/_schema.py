"""The SQLite schema: the single source of truth for every user's data.

Vector and BM25 indexes are derived from these tables. Every table that holds
personal data has a ``user_id`` column and is listed in ``USER_TABLES`` so that
``forget`` can never miss one.
"""

from __future__ import annotations

__all__ = ["SCHEMA", "SCHEMA_VERSION", "USER_TABLES"]

SCHEMA_VERSION = 1

SCHEMA = """
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

# Every table holding personal data, children before parents. fact_versions
# comes after facts: deleting the facts fires the triggers that stamp it.
USER_TABLES = ("chunks", "documents", "summaries", "facts", "fact_versions", "memories", "refresh_state", "users")
