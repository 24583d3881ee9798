"""The PostgreSQL schema, as versioned migrations applied on open (mirrors ``_sqlite_schema.py``).

Same tables, columns and meaning as the SQLite schema, in PostgreSQL types:
``bigint GENERATED ALWAYS AS IDENTITY`` for ids (never reused, like SQLite's
AUTOINCREMENT), ``double precision`` epoch seconds, ``bytea`` float32
embeddings, JSON as ``text``. SQLite's ``clocks`` rows are sequences here
(``pz_data_clock`` for data versions, ``pz_facts_clock`` for the facts stamp):
a sequence never hands out a value twice, not even to a rolled-back transaction.

Row-level security: every table in ``USER_TABLES`` has one policy comparing
``user_id`` to the transaction's ``personalize.user_id`` (or allowing the admin
scope), ``FORCE``d so it binds the tables' owner too. Migrations run as the
owner role; the application's role gets ``SELECT, INSERT, UPDATE, DELETE`` and
nothing else (:func:`grants`).

``MIGRATIONS[n - 1]`` takes a database from schema version ``n - 1`` to ``n``.
PostgreSQL support starts at the SQLite schema's version 2, so its version 1
is that whole schema; the two version numbers are independent.
"""

from __future__ import annotations

from ._tables import USER_TABLES

__all__ = ["MIGRATIONS", "POLICY", "SCHEMA_VERSION", "SEQUENCES", "grants", "rls"]

POLICY = (
    "user_id = current_setting('personalize.user_id', true)"
    " OR current_setting('personalize.scope', true) = 'admin'"
)

SEQUENCES = ("pz_data_clock", "pz_facts_clock")

_V1 = """
CREATE TABLE IF NOT EXISTS meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    user_id      text PRIMARY KEY,
    created_at   double precision NOT NULL,
    data_version bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS documents (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      text NOT NULL,
    kind         text NOT NULL,
    source       text NOT NULL,
    external_id  text,
    content_hash text NOT NULL,
    role         text,
    speaker      text,
    session      text,
    timestamp    double precision,
    metadata     text NOT NULL DEFAULT '{}',
    created_at   double precision NOT NULL,
    text         text,
    updated_at   double precision,
    call         text,
    UNIQUE (user_id, content_hash)
);
CREATE INDEX IF NOT EXISTS documents_by_session ON documents (user_id, session, timestamp, id);
CREATE INDEX IF NOT EXISTS documents_by_external ON documents (user_id, external_id);
CREATE TABLE IF NOT EXISTS chunks (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id   text NOT NULL,
    doc_id    bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    position  integer NOT NULL,
    text      text NOT NULL,
    embedding bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_user ON chunks (user_id, id);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks (doc_id, position);
CREATE TABLE IF NOT EXISTS summaries (
    user_id      text NOT NULL,
    task         text NOT NULL,
    text         text NOT NULL,
    sources      text NOT NULL DEFAULT '[]',
    generator    text NOT NULL,
    data_version bigint NOT NULL,
    created_at   double precision NOT NULL,
    PRIMARY KEY (user_id, task)
);
CREATE TABLE IF NOT EXISTS facts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       text NOT NULL,
    text          text NOT NULL,
    category      text NOT NULL,
    subject       text NOT NULL,
    polarity      integer NOT NULL DEFAULT 1,
    quote         text,
    confidence    double precision NOT NULL,
    sources       text NOT NULL DEFAULT '[]',
    generator     text NOT NULL,
    valid_from    double precision,
    valid_to      double precision,
    superseded_by bigint,
    embedding     bytea,
    created_at    double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS facts_current ON facts (user_id, superseded_by, subject);
CREATE SEQUENCE IF NOT EXISTS pz_data_clock;
CREATE SEQUENCE IF NOT EXISTS pz_facts_clock;
CREATE TABLE IF NOT EXISTS fact_versions (
    user_id text PRIMARY KEY,
    version bigint NOT NULL
);
-- The facts stamp (see _sqlite_schema.py): moved by every insert, update and
-- delete of a user's facts, from a sequence, so it never repeats for a user.
CREATE OR REPLACE FUNCTION pz_facts_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fact_versions (user_id, version)
        VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.user_id ELSE NEW.user_id END, nextval('pz_facts_clock'))
        ON CONFLICT (user_id) DO UPDATE SET version = excluded.version;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS facts_stamp ON facts;
CREATE TRIGGER facts_stamp AFTER INSERT OR UPDATE OR DELETE ON facts
    FOR EACH ROW EXECUTE FUNCTION pz_facts_stamp();
CREATE TABLE IF NOT EXISTS memories (
    user_id      text NOT NULL,
    version      bigint NOT NULL,
    text         text NOT NULL,
    generator    text NOT NULL,
    data_version bigint NOT NULL,
    created_at   double precision NOT NULL,
    PRIMARY KEY (user_id, version)
);
CREATE TABLE IF NOT EXISTS refresh_state (
    user_id    text NOT NULL,
    step       text NOT NULL,
    cursor     bigint NOT NULL DEFAULT 0,
    status     text NOT NULL,
    error      text,
    attempts   integer NOT NULL DEFAULT 0,
    seen       bigint NOT NULL DEFAULT 0,
    mark       text NOT NULL DEFAULT '',
    updated_at double precision NOT NULL,
    PRIMARY KEY (user_id, step)
);
CREATE TABLE IF NOT EXISTS history (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id   text NOT NULL,
    at        double precision NOT NULL,
    operation text NOT NULL,
    call      text NOT NULL,
    target    text NOT NULL,
    detail    text NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS history_by_user ON history (user_id, id);
"""


def rls() -> list[str]:
    """Row-level security on every table holding personal data (idempotent)."""
    out: list[str] = []
    for table in USER_TABLES:
        out += [
            f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
            f"DROP POLICY IF EXISTS pz_user_rows ON {table}",
            f"CREATE POLICY pz_user_rows ON {table} USING ({POLICY}) WITH CHECK ({POLICY})",
        ]
    return out


def grants(role: str) -> list[str]:
    """What the application role needs: data access, the sequences, nothing it could drop."""
    quoted = '"' + role.replace('"', '""') + '"'
    tables = ", ".join(("meta", *USER_TABLES))
    return [
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {quoted}",
        f"GRANT USAGE, SELECT ON SEQUENCE {', '.join(SEQUENCES)} TO {quoted}",
    ]


def _split(script: str) -> list[str]:
    """Statements of a script; ``$$`` bodies keep their semicolons."""
    out, buffer, quoted = [], [], False
    for line in script.splitlines():
        if line.strip().startswith("--") and not quoted:
            continue
        buffer.append(line)
        quoted ^= line.count("$$") % 2 == 1
        if not quoted and line.rstrip().endswith(";"):
            out.append("\n".join(buffer).strip().rstrip(";"))
            buffer = []
    if "".join(buffer).strip():
        out.append("\n".join(buffer).strip())
    return out


# Each migration: a list of statements, then rls() is re-applied (policies on new tables).
MIGRATIONS: tuple[list[str], ...] = (_split(_V1),)
SCHEMA_VERSION = len(MIGRATIONS)
