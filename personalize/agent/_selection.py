"""The packer's greedy selection (rules 2 to 5 of :mod:`personalize.agent.packing`).

:class:`Selector` offers candidates to the budget in three passes (the reserved
shares, then usefulness per token capped per section, then uncapped), charging
each chosen line, and the section labels and day lines it opens, its exact
token count. It is resumable: :meth:`Selector.top_up` offers what is left to
the few tokens the final measurement shows are still free.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..tokens import TokenCounter
from ._dedup import Dedup
from ._lines import LINE_ESTIMATE, Chosen, Prep, fit, norm_words
from ._usefulness import by_usefulness
from .context import SECTION_CLOSE, SECTION_NAMES, render_day, render_header, render_item, render_section_open

if TYPE_CHECKING:
    from .packing import PackingConfig

__all__ = ["Selector"]


class Selector:
    """Greedy selection against exact per-line token counts (resumable, for the top-up)."""

    def __init__(
        self, preps: list[Prep], task: str | None, budget: int, counter: TokenCounter, config: PackingConfig
    ) -> None:
        self.preps = preps
        self.budget = budget
        self.counter = counter
        self.config = config
        self.remaining = budget - counter.count(render_header(task) + "\n")
        self.used = dict.fromkeys(SECTION_NAMES, 0)
        self.opened: dict[str, bool] = {}  # section -> whether its label says "extractive"
        self.days: set[tuple[str, str]] = set()
        self.chosen: list[Chosen] = []
        self.taken: set[int] = set()
        self.dedup = Dedup(config.duplicate_cosine, len(preps))
        self.duplicates = 0
        self.order: list[Prep] = []

    def _section_cost(self, name: str, extractive: bool) -> int:
        # Label, opening tag and closing tag, each with its line break.
        count = self.counter.count
        return count(render_section_open(name, extractive) + "\n") + count(SECTION_CLOSE + "\n")

    def offer(self, p: Prep, limit: float) -> None:
        c, counter, config = p.cand, self.counter, self.config
        avail = min(self.remaining, limit - self.used[c.section])
        known = p.counted
        fits = known is not None and known <= avail
        too_big = (known is not None and known > avail) or p.est > 2 * avail + LINE_ESTIMATE
        if not fits and (avail < 2 or (too_big and (not c.truncatable or avail < config.min_truncated_tokens + 2))):
            # Cheap rejections first, before counting: most offers near the end
            # do not fit (the estimate is about twice the least a text of that
            # size takes in BPE, so only a rare, very repetitive text is missed).
            return
        extractive = c.kind in ("summary", "memory") and c.metadata.get("generator") == "extractive"
        if c.section not in self.opened:
            opening = self._section_cost(c.section, extractive)
        elif extractive and not self.opened[c.section]:
            opening = self._section_cost(c.section, True) - self._section_cost(c.section, False)
        else:
            opening = 0
        day = p.day
        if day is not None and (c.section, day) not in self.days:
            # Days print in time order, with the year only on the first day of
            # each year: a short label, plus the year once per section and year.
            label, _, year = day.rpartition(" ")
            opening += counter.count(render_day(label) + "\n")
            if (c.section, year) not in self.days:
                opening += counter.count(render_day(day) + "\n") - counter.count(render_day(label) + "\n")
        room = int(avail) - opening
        if room < 2:  # no line is shorter
            return
        need = p.cost(counter)
        if need > room and (not c.truncatable or room < config.min_truncated_tokens + 2
                            or room - p.overhead(counter) < config.min_truncated_tokens):
            return  # truncate only when a useful part fits
        if self.dedup.is_duplicate(p):
            self.taken.add(id(p))
            self.duplicates += 1
            return
        if need <= room:
            text, line, cost, truncated = c.text, p.line(), need, False
        else:
            text = fit(p, room, counter, config)
            if not text:
                return
            line = render_item(c.kind, text, c.sources, c.metadata, dated=day is None, ref=1)
            cost = counter.count(line + "\n")
            truncated = True
        self.taken.add(id(p))
        self.dedup.add(c, norm_words(text) if truncated else p.norm())
        self.chosen.append(Chosen(p, text, line, cost, truncated))
        self.opened[c.section] = self.opened.get(c.section, False) or extractive
        if day is not None:
            self.days.add((c.section, day))
            self.days.add((c.section, day.rpartition(" ")[2]))
        self.used[c.section] += cost + opening
        self.remaining -= cost + opening

    def run(self) -> None:
        config, budget = self.config, self.budget
        if self.remaining <= 2:
            return
        # Pass 0: reserved shares, best item first within each section, for
        # items that score as really relevant (the summary of a task that was
        # asked for or detected, not the default task's).
        for name, share in config.reserve.items():
            limit = share * budget
            for p in sorted((p for p in self.preps if p.cand.section == name
                             and p.cand.score >= config.reserve_min_score), key=lambda p: -p.cand.score):
                if self.remaining <= 2 or self.used[name] >= limit:
                    break
                self.offer(p, limit)
        # Pass 1 (capped) and pass 2 (uncapped): usefulness per token across
        # sources (see by_usefulness).
        self.order = by_usefulness(self.preps, config)
        for capped in (True, False):
            self._pass(capped)

    def _pass(self, capped: bool) -> None:
        caps, budget = self.config.caps, self.budget
        for p in self.order:
            if self.remaining <= 2:
                break
            if id(p) not in self.taken:
                self.offer(p, caps.get(p.cand.section, 1.0) * budget if capped else math.inf)

    def top_up(self, slack: int) -> bool:
        """Offer what is left to ``slack`` more tokens (measured); whether anything was added."""
        before = len(self.chosen)
        self.remaining = slack - 1  # the break before the new line's section or day may not merge
        self._pass(False)
        return len(self.chosen) > before
