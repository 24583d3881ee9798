"""``export``: everything the library holds about one user, as plain JSON data.

Format (version 2)::

    {"format": "personalize.export", "version": 2, "user_id": ...,
     "exported_at": ISO-8601, "stats": {...},
     "documents": [{id, kind, source, external_id, role, speaker, session,
                    timestamp, metadata, created_at, updated_at,
                    chunks: [{id, position, text}]}],
     "summaries": [{task, text, sources, generator, data_version, created_at}],
     "facts": [{id, text, category, subject, polarity, quote, confidence, sources,
                generator, valid_from, valid_to, superseded_by, created_at}],
     "memories": [{version, text, generator, data_version, created_at}],
     "history": [{at, operation, call, target, detail}]}

Version 2 added ``updated_at`` and ``history`` (every change: what, when,
which call; ids and counts, never text).

Embeddings are not exported: they are derived from the texts.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from .store import Store, from_epoch

__all__ = ["export_user"]


def _iso(value: float | None) -> str | None:
    ts = from_epoch(value)
    return ts.isoformat() if ts else None


def export_user(store: Store, user_id: str) -> dict[str, Any]:
    """The export document of ``user_id`` (see the module docstring)."""
    stats = store.stats(user_id)
    for key in ("first_timestamp", "last_timestamp"):
        stats[key] = stats[key].isoformat() if stats[key] else None
    summaries = [
        {"task": t, "text": x, "sources": json.loads(s), "generator": g, "data_version": v, "created_at": _iso(c)}
        for t, x, s, g, v, c in store.query(
            "SELECT task, text, sources, generator, data_version, created_at FROM summaries "
            "WHERE user_id = ? ORDER BY task",
            (user_id,), user_id=user_id,
        )
    ]
    facts = [
        {
            "id": i, "text": x, "category": cat, "subject": subj, "polarity": pol, "quote": quote,
            "confidence": conf, "sources": json.loads(src), "generator": g, "valid_from": _iso(vf),
            "valid_to": _iso(vt), "superseded_by": sup, "created_at": _iso(c),
        }
        for i, x, cat, subj, pol, quote, conf, src, g, vf, vt, sup, c in store.query(
            "SELECT id, text, category, subject, polarity, quote, confidence, sources, generator, valid_from, "
            "valid_to, superseded_by, created_at FROM facts WHERE user_id = ? ORDER BY id",
            (user_id,), user_id=user_id,
        )
    ]
    memories = [
        {"version": v, "text": x, "generator": g, "data_version": dv, "created_at": _iso(c)}
        for v, x, g, dv, c in store.query(
            "SELECT version, text, generator, data_version, created_at FROM memories "
            "WHERE user_id = ? ORDER BY version",
            (user_id,), user_id=user_id,
        )
    ]
    return {
        "format": "personalize.export",
        "version": 2,
        "user_id": user_id,
        "exported_at": datetime.now(timezone.utc).isoformat(),
        "stats": stats,
        "documents": store.documents(user_id),
        "summaries": summaries,
        "facts": facts,
        "memories": memories,
        "history": [
            {"at": c.at.isoformat(), "operation": c.operation, "call": c.call, "target": c.target,
             "detail": c.detail}
            for c in store.history(user_id)
        ],
    }
