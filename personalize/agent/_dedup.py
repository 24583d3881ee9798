"""Near-duplicate detection for the packer (rule 4 of :mod:`personalize.agent.packing`).

A candidate is dropped when it is too close to an item already chosen: the same
chunk, cosine of the chunk embeddings, the same normalized text, its normalized
text contained in the chosen item's packed text, or a fact whose sources are
all packed turns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._lines import Prep

if TYPE_CHECKING:
    from .packing import Candidate

__all__ = ["Dedup"]


class Dedup:
    """Near-duplicate test of a candidate against the items chosen so far."""

    def __init__(self, threshold: float, capacity: int) -> None:
        self.threshold = threshold
        self.keys: set[int] = set()  # chunk ids of chosen retrieved items
        self.exact: set[str] = set()
        self.norms: list[str] = []  # padded with spaces, for whole-word containment
        self.matrix: np.ndarray | None = None
        self.n_vectors = 0
        self.capacity = capacity

    def is_duplicate(self, prep: Prep) -> bool:
        cand = prep.cand
        if cand.sources:
            if cand.section == "retrieved":
                if cand.sources[0].chunk_id in self.keys:
                    return True
            elif cand.section != "summary" and all(s.chunk_id in self.keys for s in cand.sources):
                # A fact or memory line drawn only from turns already packed
                # restates them: the turn itself carries the fact and its context.
                return True
        norm = prep.norm()
        if norm in self.exact:
            return True
        if norm.count(" ") >= 2:
            # Only a candidate that adds nothing is a duplicate: one whose words
            # already appear (in order) in a chosen item. A longer item that
            # contains a chosen short one still carries more.
            padded = f" {norm} "
            if any(padded in other for other in self.norms):
                return True
        if cand.vector is not None and self.n_vectors:
            sims = self.matrix[: self.n_vectors] @ np.asarray(cand.vector, dtype=np.float32)  # type: ignore[index]
            if float(sims.max()) >= self.threshold:
                return True
        return False

    def add(self, cand: Candidate, packed_norm: str) -> None:
        if cand.section == "retrieved" and cand.sources:
            self.keys.add(cand.sources[0].chunk_id)
        # The packed (maybe truncated) text: what a later candidate must not repeat.
        self.exact.add(packed_norm)
        self.norms.append(f" {packed_norm} ")
        if cand.vector is not None:
            vec = np.asarray(cand.vector, dtype=np.float32).ravel()
            if self.matrix is None:
                self.matrix = np.empty((self.capacity, vec.shape[0]), dtype=np.float32)
            self.matrix[self.n_vectors] = vec
            self.n_vectors += 1
