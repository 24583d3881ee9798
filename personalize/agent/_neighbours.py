"""Second-stage scoring of retrieved chat turns by the turns around them (recall questions).

Two signals plain search does not use, both about where a turn sits in the
conversation:

- **Neighbours.** A question about what happened often matches the turn that *asks* about it
  ("What did you do last weekend?") while the answer is the reply, or matches a
  turn whose meaning lives in its neighbours ("Yes! It was amazing"). Each
  retrieved chat turn is also judged by the turns just before and after it in
  its session, from the embeddings already stored (no embedding is computed):
  ``+ neighbour_weight * max(cos(q, previous), cos(q, next))``.
- **The session.** A topic is talked about in one conversation, over several
  turns: a turn from a session where other retrieved turns match well is
  likelier to hold the answer than an equally scored stray turn elsewhere:
  ``+ session_weight * (the best score of another retrieved turn of its session)``.

The retrieve node ranks the hits by their search score plus these terms, then
hands search's scores out in the new order (``Nodes._rerank``): the order
changes, the scale the packer compares sources on does not.

A document's chunks get the same two terms, with the document as their
conversation (the chunks beside it, and the best other retrieved chunk of the
same document), so documents and chat turns keep competing on one scale.

"Before" and "after" are the chunks just before and after it in its session: the
previous or next chunk of the same document (a long turn split in chunks), else
the last chunk of the previous turn or the first of the next one, turns ordered
by time and then by id (a turn without a time: among the session's untimed
turns, by id), so turns appended one at a time, between other users' writes,
still find each other. One store read fetches the chunks of every retrieved
turn and of the turns before and after it (position and time, no text; the
embeddings come from this host's FAISS shard): a seek on ``documents_by_session`` per side and turn, through
``store.query`` with ``?`` placeholders, the same SQL on SQLite and PostgreSQL.
The session signal needs no read.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..types import Chunk

__all__ = ["Neighbours", "neighbours", "session_support"]

# The turn next to each retrieved one ({docs}) in its session: by time, then id
# (a covering seek on documents_by_session). Turns without a time: among the
# session's other untimed turns, by id.
_TIMED = (
    "SELECT (SELECT p.id FROM documents p WHERE p.user_id = h.user_id AND p.session = h.session "
    "AND (p.timestamp, p.id) {op} (h.timestamp, h.id) ORDER BY p.timestamp {order}, p.id {order} LIMIT 1) "
    "FROM documents h WHERE {{own_h}} AND h.id IN ({{docs}})"
)
_UNTIMED = (
    "SELECT (SELECT p.id FROM documents p WHERE p.user_id = h.user_id AND p.session = h.session "
    "AND p.timestamp IS NULL AND p.id {op} h.id ORDER BY p.id {order} LIMIT 1) "
    "FROM documents h WHERE {{own_h}} AND h.id IN ({{docs}})"
)
_SIDES = {
    "timed": (_TIMED.format(op="<", order="DESC"), _TIMED.format(op=">", order="ASC")),
    "untimed": (_UNTIMED.format(op="<", order="DESC"), _UNTIMED.format(op=">", order="ASC")),
}
# The chunks of those turns and of the retrieved ones: position and time (no text, no embedding:
# the vectors come from this host's index where it holds them).
_SQL = (
    "SELECT d.id, d.session, d.timestamp, c.id, c.position FROM documents d "
    "JOIN chunks c ON c.doc_id = d.id WHERE {own_d} AND d.kind = 'message' AND d.id IN ({ids})"
)
# A document's chunks around its retrieved ones (no session, no time: ordered by position).
_DOC_SQL = (
    "SELECT c.doc_id, NULL, NULL, c.id, c.position FROM chunks c "
    "WHERE {own_c} AND ({terms})"
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


def neighbours(
    store: Any,
    user_id: str,
    turns: Sequence[Chunk],
    qvec: np.ndarray,
    vectors: Callable[[list[int]], dict[int, np.ndarray]] | None = None,
    known: dict[int, float] | None = None,
) -> Neighbours:
    """The chunks around ``turns`` and their cosines to ``qvec``, in one store read.

    ``vectors(ids) -> {id: embedding}`` gives the chunks' stored embeddings
    (``HybridRetriever.vectors``: from this host's FAISS shard, else the store;
    by default ``store.embeddings``, a second read). ``known``: cosines already
    at hand (the hits' dense scores), whose vectors are not fetched.

    A chat turn with a session: the turns before and after it in the session
    (the chunks beside it, when its turn is split in chunks). A document's
    chunk: the chunks beside it in its document. ``store.query`` runs the read
    (the user's own rows only, on every engine); more than about 200 turns are
    read in batches under the engine's parameter limit.
    """
    turns = [c for c in turns if c.kind != "message" or c.session is not None]
    docs = list(dict.fromkeys(int(c.doc_id) for c in turns))
    size = max(1, (int(getattr(store, "in_batch", 900)) - 8) // 4)
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(docs), size):
        part = set(docs[start : start + size])
        sql, params = _statement(user_id, [c for c in turns if int(c.doc_id) in part], store.own_by_id)
        rows += store.query(sql, params, user_id=user_id)
    if not rows:
        return Neighbours({}, {}, {})
    # Each chunk once (a turn is its neighbours' neighbour too), with its cosine.
    unique = list({int(r[3]): r for r in rows}.values())
    cosine = {cid: v for cid, v in (known or {}).items() if v is not None}
    ids = [int(r[3]) for r in unique if int(r[3]) not in cosine]
    if ids:
        if vectors is None:
            held, vecs = store.embeddings(user_id, ids)
            found = {int(i): v for i, v in zip(held, vecs)}
        else:
            found = vectors(ids)
        q = np.asarray(qvec, dtype=np.float32)
        cosine.update((cid, float(found[cid] @ q)) for cid in ids if cid in found)
    unique = [r for r in unique if int(r[3]) in cosine]  # (a chunk deleted meanwhile: no neighbour)
    # Conversation order of the chunks read: every retrieved turn's previous
    # and next turns were read, so in this order its neighbours are beside it.
    # Timed and untimed turns are ordered apart and never neighbours; a
    # document's chunks (no session) are ordered within their document.
    order = sorted(unique, key=lambda r: (r[1] is None, str(r[1]) if r[1] is not None else int(r[0]), r[2] is None,
                                          r[2] if r[2] is not None else 0, int(r[0]), int(r[4])))
    before: dict[int, int] = {}
    after: dict[int, int] = {}
    for a, b in zip(order, order[1:]):
        if a[1] is not None:
            beside = a[1] == b[1] and (a[2] is None) == (b[2] is None)
        else:
            beside = b[1] is None and a[0] == b[0] and int(b[4]) == int(a[4]) + 1
        if beside:
            after[int(a[3])] = int(b[3])
            before[int(b[3])] = int(a[3])
    # Only the retrieved turns' links are sure (the chunk before a neighbour
    # may not have been read): keep those.
    asked = {int(c.id) for c in turns}
    return Neighbours(cosine, {k: v for k, v in before.items() if k in asked},
                      {k: v for k, v in after.items() if k in asked})


def _statement(user_id: str, turns: list[Chunk], own: Callable[[str], str] = "{}.user_id = ?".format
               ) -> tuple[str, list[Any]]:
    """One SQL statement (``UNION ALL`` of the parts these turns need) and its parameters.

    ``own(alias)`` is the store's condition for the user's rows looked up by id
    (``SQLStore.own_by_id``: it keeps the primary key the lookup's index).
    """
    parts: list[tuple[str, list[Any]]] = []
    for timed in (True, False):
        docs = sorted({int(c.doc_id) for c in turns if c.kind == "message" and (c.timestamp is not None) == timed})
        if docs:
            marks = ",".join("?" * len(docs))
            sides = _SIDES["timed" if timed else "untimed"]
            ids = " UNION ALL ".join([f"SELECT h.id FROM documents h WHERE {own('h')} AND h.id IN ({marks})",
                                      *(side.format(docs=marks, own_h=own("h")) for side in sides)])
            parts.append((_SQL.format(ids=ids, own_d=own("d")), [user_id, *((user_id, *docs) * 3)]))
    spans: dict[int, tuple[int, int]] = {}  # a document: its retrieved chunks' first and last position
    for c in turns:
        if c.kind != "message":
            lo, hi = spans.get(int(c.doc_id), (c.position, c.position))
            spans[int(c.doc_id)] = (min(lo, c.position), max(hi, c.position))
    if spans:
        terms = " OR ".join(["(c.doc_id = ? AND c.position BETWEEN ? AND ?)"] * len(spans))
        parts.append((_DOC_SQL.format(terms=terms, own_c=own("c")),
                      [user_id, *(v for d, (lo, hi) in sorted(spans.items()) for v in (d, lo - 1, hi + 1))]))
    return " UNION ALL ".join(sql for sql, _ in parts), [v for _, p in parts for v in p]


def session_support(sessions: Sequence[Hashable | None], scores: Sequence[float]) -> list[float]:
    """For each turn, the best score of *another* turn of its session among these (0.0 when none or no session)."""
    best: dict[Hashable, list[float]] = {}  # session -> its two best scores
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
