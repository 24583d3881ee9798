"""Choosing a user's items for a summary: representative and task-relevant, not the first N.

:func:`diversity_order` clusters the items' embeddings (k-means, deterministic
farthest-point initialisation) and orders them so that every prefix covers
the user's data: the medoid of the largest cluster first, then the medoid of
the next, and so on, then the runners-up of each cluster. Within a cluster an
item's rank mixes how central it is with how relevant it is to the task
(cosine to the task description). Taking a prefix gives the extractive
summarizer its representative items and the LLM summarizer an input that
fits its window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from ..store import Store
from ..tasks import Task

__all__ = [
    "ProfileItem",
    "diversity_order",
    "load_items",
    "rank_for_task",
    "select_within_budget",
    "task_items",
]

_ASSISTANT_ROLES = frozenset({"assistant", "system", "tool", "function", "developer"})


@dataclass(frozen=True)
class ProfileItem:
    """One of the user's chunks, as summarizers see it."""

    chunk_id: int
    text: str
    kind: str
    role: str | None
    timestamp: datetime | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def from_user(self) -> bool:
        """Written by the user (not an assistant or system turn)."""
        return not (self.kind == "message" and (self.role or "user").lower() in _ASSISTANT_ROLES)


def load_items(store: Store, user_id: str) -> tuple[list[ProfileItem], np.ndarray]:
    """Every chunk of the user with its embedding, in id order."""
    ids, vectors = store.all_embeddings(user_id)
    if not len(ids):
        return [], np.zeros((0, 0), np.float32)
    chunks = store.chunks(user_id, ids.tolist())
    items = []
    keep = []
    for row, cid in enumerate(ids.tolist()):
        chunk = chunks.get(cid)
        if chunk is None:
            continue
        items.append(ProfileItem(cid, chunk.text, chunk.kind, chunk.role, chunk.timestamp, dict(chunk.metadata)))
        keep.append(row)
    return items, np.ascontiguousarray(vectors[keep])


def task_items(task: Task, items: Sequence[ProfileItem]) -> list[int]:
    """Indexes of the items a task's summary should draw on.

    The user's own words only; for ``chat``, their chat turns when there are
    any; for other tasks, the items carrying the task's signal (a tag, a score,
    a title) when there are any, else all of the user's items.
    """
    own = [i for i, item in enumerate(items) if item.from_user and item.text.strip()]
    if task.kind == "chat":
        turns = [i for i in own if items[i].kind == "message"]
        return turns or own
    signal = [i for i in own if task.applies_to(items[i].text, items[i].metadata)]
    return signal or own


def _kmeans(vectors: np.ndarray, k: int, iterations: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means on unit vectors: ``(centroids, labels)``."""
    n = len(vectors)
    mean = vectors.mean(axis=0)
    first = int(np.argmax(vectors @ mean))
    chosen = [first]
    nearest = 1.0 - vectors @ vectors[first]
    for _ in range(1, k):
        nxt = int(np.argmax(nearest))
        if nearest[nxt] <= 1e-6:
            break
        chosen.append(nxt)
        nearest = np.minimum(nearest, 1.0 - vectors @ vectors[nxt])
    centroids = vectors[chosen].copy()
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        labels = np.argmax(vectors @ centroids.T, axis=1)
        for c in range(len(centroids)):
            members = vectors[labels == c]
            if len(members):
                centre = members.mean(axis=0)
                norm = float(np.linalg.norm(centre))
                centroids[c] = centre / norm if norm > 0 else centre
    return centroids, np.argmax(vectors @ centroids.T, axis=1)


def diversity_order(
    vectors: np.ndarray,
    relevance: np.ndarray | None = None,
    *,
    clusters: int = 8,
    relevance_weight: float = 0.3,
) -> list[int]:
    """Indexes of ``vectors`` ordered so that each prefix is representative.

    Args:
        vectors: ``(n, dim)`` unit vectors.
        relevance: ``(n,)`` cosine of each item to the task (``None``: ignored).
        clusters: how many clusters (at most ``n``).
        relevance_weight: weight of task relevance against centrality.

    Returns:
        A permutation of ``range(n)``.
    """
    n = len(vectors)
    if n == 0:
        return []
    if n == 1:
        return [0]
    k = max(1, min(clusters, n))
    centroids, labels = _kmeans(np.asarray(vectors, dtype=np.float32), k)
    centrality = np.sum(vectors * centroids[labels], axis=1)
    score = centrality + (relevance_weight * relevance if relevance is not None else 0.0)
    members: list[list[int]] = []
    for c in range(len(centroids)):
        idx = np.flatnonzero(labels == c)
        if len(idx):
            members.append([int(i) for i in idx[np.argsort(-score[idx], kind="stable")]])
    members.sort(key=lambda m: (-len(m), m[0]))
    order: list[int] = []
    depth = 0
    while len(order) < n:
        for group in members:
            if depth < len(group):
                order.append(group[depth])
        depth += 1
    return order


def select_within_budget(
    order: Sequence[int],
    cost: Callable[[int], int],
    budget: int,
) -> list[int]:
    """The prefix of ``order`` (skipping items too large to fit) within ``budget``, in index order."""
    chosen: list[int] = []
    used = 0
    for i in order:
        c = cost(i)
        if used + c > budget:
            continue
        chosen.append(i)
        used += c
    return sorted(chosen)


def rank_for_task(
    task: Task,
    items: Sequence[ProfileItem],
    vectors: np.ndarray,
    task_vector: np.ndarray | None,
    *,
    clusters: int = 8,
) -> list[int]:
    """Indexes of the task's items (:func:`task_items`), most representative first.

    Args:
        task: the task.
        items: all of the user's items.
        vectors: their embeddings, aligned with ``items``.
        task_vector: the embedding of the task's description (relevance), or None.
        clusters: how many clusters to spread the choice over.
    """
    chosen = task_items(task, items)
    if not chosen:
        return []
    sub = vectors[chosen]
    relevance = sub @ task_vector if task_vector is not None and len(sub) else None
    return [chosen[i] for i in diversity_order(sub, relevance, clusters=clusters)]
