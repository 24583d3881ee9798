"""One candidate's prompt line for the packer: rendered, counted and truncated to a token room.

:class:`Prep` renders and counts a candidate at most once per
:func:`~personalize.agent.packing.pack` call, and only when asked (that is,
when the candidate is offered with room it could fit in); :class:`Chosen` is
a line the packer has chosen, maybe truncated; :func:`truncate_text` and
:func:`fit` cut a text down to a token room. ``truncate_text`` is public as
``personalize.agent.packing.truncate_text``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..tokens import TokenCounter
from .context import day_of, render_item

if TYPE_CHECKING:
    from .packing import Candidate, PackingConfig

__all__ = ["LINE_ESTIMATE", "Chosen", "Prep", "fit", "norm_words", "truncate_text"]

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"[.!?\u2026](?=\s)|\n")
_ELLIPSIS = "\u2026"
_UNSET = object()
LINE_ESTIMATE = 10  # tokens of a line's prefix, citation and break, for ordering


def truncate_text(text: str, max_tokens: int, counter: TokenCounter) -> str:
    """A prefix of ``text`` of at most ``max_tokens`` tokens, ending in an ellipsis.

    Cuts at a sentence end when that keeps most of the room; ``""`` when
    nothing fits.
    """
    if max_tokens <= 0:
        return ""
    if counter.count(text) <= max_tokens:
        return text
    room = max_tokens - counter.count(_ELLIPSIS)
    if room <= 0:
        return ""
    prefix = counter.truncate(text, room)
    ends = [m.end() for m in _SENTENCE_END.finditer(prefix)]
    if ends and ends[-1] >= 0.6 * len(prefix):
        prefix = prefix[: ends[-1]]
    prefix = prefix.rstrip()
    while prefix and counter.count(prefix + _ELLIPSIS) > max_tokens:
        prefix = counter.truncate(prefix, max(counter.count(prefix) - 1, 0)).rstrip()
    return prefix + _ELLIPSIS if prefix else ""


def norm_words(text: str) -> str:
    """The text's lowercase words, space-separated: what near-duplicate tests compare."""
    return " ".join(_WORD.findall(text.lower()))


class Prep:
    """One candidate's rendering and costs, each computed at most once per :func:`pack` call."""

    __slots__ = ("cand", "est", "_day", "_line", "_cost", "_norm", "_overhead", "key")

    def __init__(self, cand: Candidate) -> None:
        self.cand = cand
        # For ordering only (the budget uses exact counts): about 4 bytes a
        # token, plus the line's prefix and citation.
        self.est = len(cand.text.encode("utf-8", "replace")) / 4 + LINE_ESTIMATE
        self._day: Any = _UNSET
        self._line: str | None = None
        self._cost = -1
        self._norm: str | None = None
        self._overhead = -1
        self.key: tuple[Any, ...] | None = None

    @property
    def day(self) -> str | None:
        if self._day is _UNSET:
            self._day = day_of(self.cand.kind, self.cand.metadata)
        return self._day  # type: ignore[no-any-return]

    def line(self) -> str:
        if self._line is None:
            c = self.cand
            self._line = render_item(c.kind, c.text, c.sources, c.metadata, dated=self.day is None, ref=1)
        return self._line

    def cost(self, counter: TokenCounter) -> int:
        # With its line break: BPE merges "]" or "." with it, and no token
        # spans two lines, so these add up to the whole prompt's count.
        if self._cost < 0:
            self._cost = counter.count(self.line() + "\n")
        return self._cost

    @property
    def counted(self) -> int | None:
        """The line's exact cost if :meth:`cost` has counted it already, else ``None``."""
        return self._cost if self._cost >= 0 else None

    def overhead(self, counter: TokenCounter) -> int:
        """Tokens of the line around the text (prefix, citation, break)."""
        if self._overhead < 0:
            c = self.cand
            self._overhead = counter.count(render_item(c.kind, "", c.sources, c.metadata, dated=self.day is None, ref=1)
                                           + "\n")
        return self._overhead

    def norm(self) -> str:
        if self._norm is None:
            self._norm = norm_words(self.cand.text)
        return self._norm


@dataclass
class Chosen:
    prep: Prep
    text: str
    line: str
    tokens: int
    truncated: bool

    @property
    def cand(self) -> Candidate:
        return self.prep.cand


def fit(p: Prep, room: int, counter: TokenCounter, config: PackingConfig) -> str:
    """Truncate the candidate's text so that its rendered line (with its break) takes at most ``room`` tokens."""
    c = p.cand
    target = room - p.overhead(counter)
    for _ in range(4):
        if target < config.min_truncated_tokens:
            return ""
        text = truncate_text(c.text, target, counter)
        if text and counter.count(render_item(c.kind, text, c.sources, c.metadata, dated=p.day is None, ref=1)
                                  + "\n") <= room:
            return text
        target -= 2
    return ""
