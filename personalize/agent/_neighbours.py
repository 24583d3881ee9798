"""Second-stage scoring of retrieved chat turns by the turns around them (recall questions).

Two signals plain search does not use, both about where a turn sits in the
conversation:

- **Neighbours.** A question about what happened often matches the turn that *asks* about it
  ("What did you do last weekend?") while the answer is the reply, or matches a
  turn whose meaning lives in its neighbours ("Yes! It was amazing"). Each
  retrieved chat turn is also judged by the turns just before and after it in
  its session, from the embeddings already stored (no embedding is computed):
  ``score += neighbour_weight * max(cos(q, previous), cos(q, next))``.
- **The session.** A topic is talked about in one conversation, over several
  turns: a turn from a session where other retrieved turns match well is
  likelier to hold the answer than an equally scored stray turn elsewhere:
  ``score += session_weight * (the best score of another retrieved turn of its session)``.

"Before" and "after" are the chunks stored just before and after it: the
previous or next chunk of the same document (a long turn split in chunks), else
the turn ingested just before or after it in the same session (``add_messages``
commits turns in input order). One store read, by document id, fetches every
neighbour's position, session and embedding (no text); it goes through
``store.query`` with ``?`` placeholders, so it is the same on SQLite and
PostgreSQL. The session signal needs no read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..types import Chunk

__all__ = ["Neighbours", "neighbours", "session_support"]

_SQL = (
    "SELECT c.id, c.doc_id, c.position, d.session, c.embedding FROM chunks c JOIN documents d ON d.id = c.doc_id "
    "WHERE c.user_id = ? AND d.kind = 'message' AND c.doc_id IN ({marks})"
)


@dataclass
class Neighbours:
    """Cosines to the query of the chunks around some chat turns.

    Attributes:
        cosine: chunk id -> cosine between the query and the chunk's stored embedding
            (every chunk read, the turns asked about included).
        before, after: chunk id -> the id of the chunk just before / after it in its session.
    """

    cosine: dict[int, float]
    before: dict[int, int]
    after: dict[int, int]

    def best(self, chunk_id: int) -> float | None:
        """The better cosine of the chunk's two neighbours (``None`` when it has none)."""
        vals = [self.cosine[n] for n in (self.before.get(chunk_id), self.after.get(chunk_id)) if n is not None]
        return max(vals) if vals else None


def neighbours(store: Any, user_id: str, turns: Sequence[Chunk], qvec: np.ndarray) -> Neighbours:
    """The neighbours of ``turns`` (chat turns with a session; others are ignored), in one store read.

    ``store.query`` runs it (the user's own rows only, on every engine); a very
    long list of turns is read in batches under the engine's parameter limit.
    """
    docs = sorted({d for c in turns if c.kind == "message" and c.session is not None
                   for d in (c.doc_id - 1, c.doc_id, c.doc_id + 1)})
    rows: list[tuple[Any, ...]] = []
    batch = max(1, int(getattr(store, "in_batch", 900)) - 1)
    for start in range(0, len(docs), batch):
        part = docs[start : start + batch]
        rows += store.query(_SQL.format(marks=",".join("?" * len(part))), (user_id, *part), user_id=user_id)
    if not rows:
        return Neighbours({}, {}, {})
    matrix = np.frombuffer(b"".join(bytes(r[4]) for r in rows), dtype=np.float32).reshape(len(rows), -1)
    cos = matrix @ np.asarray(qvec, dtype=np.float32)
    cosine = {int(r[0]): float(v) for r, v in zip(rows, cos)}
    # Session order: by document, then position within it. The rows hold whole
    # documents, so two consecutive rows are neighbours exactly when they are
    # in the same session and in the same document or consecutive ones.
    order = sorted(rows, key=lambda r: (int(r[1]), int(r[2])))
    before: dict[int, int] = {}
    after: dict[int, int] = {}
    for a, b in zip(order, order[1:]):
        if a[3] == b[3] and int(b[1]) - int(a[1]) in (0, 1):
            after[int(a[0])] = int(b[0])
            before[int(b[0])] = int(a[0])
    return Neighbours(cosine, before, after)


def session_support(sessions: Sequence[str | None], scores: Sequence[float]) -> list[float]:
    """For each turn, the best score of *another* turn of its session among these (0.0 when none)."""
    best: dict[str, list[float]] = {}  # session -> its two best scores
    for session, score in zip(sessions, scores):
        if session is None:
            continue
        top = best.setdefault(session, [])
        top.append(float(score))
        top.sort(reverse=True)
        del top[2:]
    out = []
    for session, score in zip(sessions, scores):
        top = best.get(session) if session is not None else None
        if not top or len(top) < 2:
            out.append(0.0)
        else:
            out.append(top[1] if top[0] == float(score) else top[0])
    return out
