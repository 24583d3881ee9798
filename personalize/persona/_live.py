"""The current facts of one user while a batch of candidates is applied, indexed for lookups.

Each candidate is compared with every current fact (same words, same subject,
or an embedding within the duplicate threshold). A plain list made that a
Python loop over all facts per candidate: quadratic in the facts, minutes per
refresh at 100k chunks. Here exact matches are dictionary lookups and the
cosine test is one matrix-vector product over a matrix that grows in place.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["Live", "LiveFacts"]


@dataclass
class Live:
    """A current fact held in memory while a batch is applied."""

    id: int
    subject: str
    polarity: int
    norm: str
    vector: np.ndarray | None
    valid_from: float | None
    sources: list[int]
    confidence: float
    manual: bool = False  # made or edited by hand: wins over extracted facts it contradicts


class LiveFacts:
    """Current facts in insertion order, with their vectors in one matrix."""

    def __init__(self, facts: Iterable[Live] = ()) -> None:
        self._rows: list[Live | None] = []  # None: removed
        self._row_of: dict[int, int] = {}
        self._by_norm: dict[tuple[int, str], list[int]] = defaultdict(list)
        self._by_subject: dict[str, list[int]] = defaultdict(list)
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._usable = np.zeros(0, dtype=bool)  # alive and with a vector of the matrix's width
        self._polarity = np.zeros(0, dtype=np.int64)
        for fact in facts:
            self.append(fact)

    def __iter__(self):
        return (f for f in self._rows if f is not None)

    def append(self, fact: Live) -> None:
        row = len(self._rows)
        self._rows.append(fact)
        self._row_of[fact.id] = row
        self._by_norm[(fact.polarity, fact.norm)].append(row)
        self._by_subject[fact.subject].append(row)
        if row >= len(self._usable):  # grow by doubling
            size = max(16, 2 * len(self._usable))
            self._usable = np.concatenate([self._usable, np.zeros(size - len(self._usable), dtype=bool)])
            self._polarity = np.concatenate([self._polarity, np.zeros(size - len(self._polarity), dtype=np.int64)])
            if self._matrix.shape[1]:
                grown = np.zeros((size, self._matrix.shape[1]), dtype=np.float32)
                grown[: len(self._matrix)] = self._matrix
                self._matrix = grown
        self._polarity[row] = fact.polarity
        vector = fact.vector
        if vector is not None:
            if self._matrix.shape[1] == 0:
                self._matrix = np.zeros((len(self._usable), vector.shape[0]), dtype=np.float32)
            if vector.shape == (self._matrix.shape[1],):
                self._matrix[row] = vector
                self._usable[row] = True

    def remove(self, fact: Live) -> None:
        row = self._row_of.pop(fact.id)
        self._rows[row] = None
        self._usable[row] = False
        self._by_norm[(fact.polarity, fact.norm)].remove(row)
        self._by_subject[fact.subject].remove(row)

    def get(self, fact_id: int) -> Live | None:
        row = self._row_of.get(fact_id)
        return None if row is None else self._rows[row]

    def with_subject(self, subject: str) -> list[Live]:
        """Current facts on ``subject`` (any polarity), oldest first."""
        return [self._rows[r] for r in self._by_subject.get(subject, ())]  # type: ignore[misc]

    def duplicate(self, polarity: int, norm: str, subject: str, merge_on_subject: bool,
                  vector: np.ndarray | None, threshold: float) -> Live | None:
        """The current fact a candidate restates, if any.

        The first fact (oldest) of the same polarity with the same words, or on
        the same subject when ``merge_on_subject``; else the most similar one of
        the same polarity at ``threshold`` or above.
        """
        rows = list(self._by_norm.get((polarity, norm), ()))
        if merge_on_subject:
            rows += [r for r in self._by_subject.get(subject, ()) if self._polarity[r] == polarity]
        if rows:
            return self._rows[min(rows)]
        n = len(self._rows)
        if vector is None or n == 0 or vector.shape != (self._matrix.shape[1],):
            return None
        scores = self._matrix[:n] @ vector
        scores[~(self._usable[:n] & (self._polarity[:n] == polarity))] = -np.inf
        best = int(np.argmax(scores))
        return self._rows[best] if scores[best] >= threshold else None
