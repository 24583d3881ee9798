"""Pack candidate items from the three knowledge sources under a token budget.

The rules, in order (docs/agent.md has the measurements behind them):

1. **Budget, exactly.** The rendered prompt (header, section labels, tags, day
   lines, citations, newlines: everything :meth:`PersonalContext.to_prompt`
   returns) is measured with the token counter and never exceeds
   ``budget_tokens``. Selection charges each line its count with its line
   break (no BPE token spans a line break, so these add up); a final pass
   measures the whole prompt and trims the last-chosen item if it is over.
2. **Reserved share.** A task summary is dense by construction: it condenses
   many chunks, which is why summary-augmented retrieval matches retrieval
   alone with far fewer retrieved tokens. So a summary that scores (the task
   was given or detected) first gets a reserved share of the budget.
3. **Usefulness per token, across sources.** Every other candidate competes by
   ``weight * exp(sharpness * (score - ref)) * text ** content_exponent /
   line ** length_exponent``: relevance measured from the best candidate of
   any source (persona facts get a margin), content growing with the item's
   text, cost the whole line; turns that only ask count less. Per-section
   caps keep one kind from crowding out the others; a second, uncapped pass
   hands what is left to whatever remains.
4. **Near-duplicates** are dropped when a candidate is too close to an item
   already chosen: the same chunk, cosine of the chunk embeddings, the same
   normalized text, its normalized text contained in the chosen item's packed
   text, or a fact whose sources are all packed turns.
5. **Truncation.** A candidate that does not fit is truncated when it is the
   best remaining one and a useful part of it still fits; otherwise it is
   skipped and smaller items may still fit.

Each candidate is rendered and counted at most once per call, and only when it
is offered with room it could fit in.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..tokens import TokenCounter, default_token_counter
from .context import (
    SECTION_CLOSE,
    SECTION_NAMES,
    ContextItem,
    ContextSection,
    PersonalContext,
    SectionName,
    Source,
    day_of,
    prompt_lines,
    render_day,
    render_header,
    render_item,
    render_section_open,
    sort_key,
)

__all__ = ["Candidate", "PackingConfig", "pack", "truncate_text"]

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"[.!?\u2026](?=\s)|\n")
_ELLIPSIS = "\u2026"
_BRACKETED = re.compile(r"\[[^\]]*\]")
_SENTENCE = re.compile(r"[^.!?\u2026]+[.!?\u2026]*")


def only_asks(text: str) -> bool:
    """Whether ``text`` only asks: every sentence a question or an interjection ("Wow!", "Thanks Mel!").

    Bracketed asides (``[shares a photo: ...]``) are ignored.
    """
    if "?" not in text:
        return False
    for sentence in _SENTENCE.findall(_BRACKETED.sub(" ", text)):
        sentence = sentence.strip()
        if sentence and not sentence.endswith("?") and sentence.count(" ") >= 3:
            return False
    return True


@dataclass(frozen=True)
class PackingConfig:
    """How :func:`pack` spends the budget.

    Attributes:
        reserve: share of the budget reserved, per section, for its best items
            before anything else is packed (summaries and memory are dense).
        reserve_min_score: only items scoring at least this get the reserved
            share (a summary of a task given or detected, not the default one's).
        caps: the most of the budget a section may take in the competitive pass.
        length_exponent: priority is ``usefulness / tokens ** length_exponent``
            (tokens of the whole line, prefix and citation included); 1.0 is
            strictly per token, 0.0 ignores length.
        content_exponent: usefulness grows as ``text_tokens ** content_exponent``:
            1.0 says a longer text carries proportionally more (on LoCoMo,
            evidence per token *rises* with a turn's length), 0.0 that every
            item carries the same whatever its length.
        source_margin: per source, how far its relevance scores may sit below
            the others' and still count as equal: a source whose best item
            scores within the margin of the best candidate overall is measured
            from its own best item (a short fact scores a lower cosine than a
            long turn that says the same), one further below pays for the rest
            of the gap. Sources scored by a prior (summary, memory) get none.
        content_cap: the text length (tokens, estimated) beyond which more text
            is not worth more: a long summary or note is relevant as a whole,
            and its relevance is spread over all of it.
        sharpness: usefulness is ``exp(sharpness * (score - ref))``: how much
            more a slightly more relevant item is worth (calibrated on LoCoMo,
            see docs/agent.md); large values approach plain relevance order.
        weights: usefulness factor of each source (the default task's summary
            at half weight, memory lines at a quarter).
        min_truncated_tokens: the smallest part of an item worth packing.
        duplicate_cosine: chunks at least this similar to a chosen one are dropped.
        min_score: candidates scoring below this are never packed.
        question_weight: usefulness factor of a chat turn that only asks (every
            sentence a question or an interjection such as "Wow!"): it states
            nothing about the user (on LoCoMo, such turns are 15% of the top-40
            hits and hold 1 in 33 of the evidence rate of the other turns).
    """

    reserve: Mapping[str, float] = field(default_factory=lambda: {"summary": 0.3})
    reserve_min_score: float = 0.6
    caps: Mapping[str, float] = field(
        default_factory=lambda: {"summary": 0.5, "memory": 0.2, "persona": 0.35, "retrieved": 1.0}
    )
    length_exponent: float = 1.0
    content_exponent: float = 1.0
    content_cap: int = 48
    source_margin: Mapping[str, float] = field(default_factory=lambda: {"persona": 0.15})
    sharpness: float = 15.0
    weights: Mapping[str, float] = field(
        default_factory=lambda: {"summary": 0.5, "persona": 1.0, "memory": 0.25, "retrieved": 1.0}
    )
    min_truncated_tokens: int = 12
    duplicate_cosine: float = 0.95
    min_score: float = 0.0
    question_weight: float = 0.2

    def __post_init__(self) -> None:
        for name, value in [*self.reserve.items(), *self.caps.items()]:
            if name not in SECTION_NAMES or not 0.0 <= value <= 1.0:
                raise ConfigError(f"reserve/caps need a section name and a share in [0, 1]; got {name}={value}")
        for name, value in self.weights.items():
            if name not in SECTION_NAMES or not 0.0 <= value <= 100.0:
                raise ConfigError(f"weights need a section name and a factor in [0, 100]; got {name}={value}")
        if not 0.0 <= self.length_exponent <= 2.0 or not 0.0 <= self.content_exponent <= 2.0:
            raise ConfigError("length_exponent and content_exponent must be within [0, 2]")
        for name, value in self.source_margin.items():
            if name not in SECTION_NAMES or not 0.0 <= value <= 1.0:
                raise ConfigError(f"source_margin needs a section name and a margin in [0, 1]; got {name}={value}")
        if self.content_cap < 1:
            raise ConfigError("content_cap must be >= 1")
        if not 0.0 <= self.question_weight <= 1.0:
            raise ConfigError("question_weight must be within [0, 1]")
        if self.min_truncated_tokens < 1:
            raise ConfigError("min_truncated_tokens must be >= 1")


@dataclass(frozen=True)
class Candidate:
    """An item offered to the packer.

    Attributes:
        section: which section it would go to.
        kind: the item kind (``"summary"``, ``"fact"``, ``"memory"``, ``"document"``, ``"message"``).
        text: its full text.
        score: usefulness in about ``[0, 1]`` (relevance, or a prior for summaries).
        sources: provenance, kept on the packed item.
        metadata: JSON-serializable details kept on the packed item.
        vector: the chunk embedding, for near-duplicate removal (optional).
        truncatable: whether a prefix of it is still meaningful.
    """

    section: SectionName
    kind: str
    text: str
    score: float
    sources: tuple[Source, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    vector: Any = field(default=None, compare=False, repr=False)
    truncatable: bool = True


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



def _norm_words(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


class _Prep:
    """One candidate's rendering and costs, each computed at most once per :func:`pack` call."""

    __slots__ = ("cand", "est", "_day", "_line", "_cost", "_norm", "_overhead", "key")

    def __init__(self, cand: Candidate) -> None:
        self.cand = cand
        # For ordering only (the budget uses exact counts): about 4 bytes a
        # token, plus the line's prefix and citation.
        self.est = len(cand.text.encode("utf-8", "replace")) / 4 + _LINE_ESTIMATE
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
            self._line = render_item(c.kind, c.text, c.sources, c.metadata, dated=self.day is None)
        return self._line

    def cost(self, counter: TokenCounter) -> int:
        # With its line break: BPE merges "]" or "." with it, and no token
        # spans two lines, so these add up to the whole prompt's count.
        if self._cost < 0:
            self._cost = counter.count(self.line() + "\n")
        return self._cost

    def overhead(self, counter: TokenCounter) -> int:
        """Tokens of the line around the text (prefix, citation, break)."""
        if self._overhead < 0:
            c = self.cand
            self._overhead = counter.count(render_item(c.kind, "", c.sources, c.metadata, dated=self.day is None)
                                           + "\n")
        return self._overhead

    def norm(self) -> str:
        if self._norm is None:
            self._norm = _norm_words(self.cand.text)
        return self._norm


_UNSET = object()
_LINE_ESTIMATE = 10  # tokens of a line's prefix, citation and break, for ordering


@dataclass
class _Chosen:
    prep: _Prep
    text: str
    line: str
    tokens: int
    truncated: bool

    @property
    def cand(self) -> Candidate:
        return self.prep.cand


class _Dedup:
    """Near-duplicate test of a candidate against the items chosen so far."""

    def __init__(self, threshold: float, capacity: int) -> None:
        self.threshold = threshold
        self.keys: set[int] = set()  # chunk ids of chosen retrieved items
        self.exact: set[str] = set()
        self.norms: list[str] = []  # padded with spaces, for whole-word containment
        self.matrix: np.ndarray | None = None
        self.n_vectors = 0
        self.capacity = capacity

    def is_duplicate(self, prep: _Prep) -> bool:
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


def pack(
    candidates: Iterable[Candidate],
    *,
    user_id: str,
    query: str,
    task: str | None,
    budget_tokens: int,
    counter: TokenCounter | None = None,
    config: PackingConfig | None = None,
    needs_personalization: bool = True,
    info: Mapping[str, Any] | None = None,
) -> PersonalContext:
    """Choose and render candidates so that the prompt fits ``budget_tokens`` exactly.

    Args:
        candidates: items from every source, in any order.
        user_id: whose context this is.
        query: the query it is for.
        task: the task it is for (printed in the header).
        budget_tokens: the most tokens ``to_prompt()`` may take (0 packs nothing).
        counter: the target model's token counter (default: cl100k_base).
        config: packing rules.
        needs_personalization: recorded on the result.
        info: extra build details to record on the result.

    Returns:
        The packed context; empty (``to_prompt() == ""``) when nothing fits.

    Raises:
        ConfigError: ``budget_tokens`` is negative or not an int.
    """
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int) or budget_tokens < 0:
        raise ConfigError("budget_tokens must be an int >= 0")
    counter = counter or default_token_counter()
    config = config or PackingConfig()
    cands = [c for c in candidates if c.score >= config.min_score and c.text and not c.text.isspace()]
    details: dict[str, Any] = dict(info or {})
    details["candidates"] = {name: sum(c.section == name for c in cands) for name in SECTION_NAMES}
    sel = _Selector([_Prep(c) for c in cands], task, budget_tokens, counter, config)
    if cands:
        sel.run()
    chosen = sel.chosen
    sections, lines = _layout(chosen)
    prompt = _render(task, sections, lines)
    total = counter.count(prompt) if prompt else 0
    if chosen and budget_tokens - total >= 4 and sel.top_up(budget_tokens - total):
        # Selection charged every day line its year; the layout prints the year
        # only when it changes, so a few tokens were left: fill them.
        sections, lines = _layout(chosen)
        prompt = _render(task, sections, lines)
        total = counter.count(prompt)
    # Per-line counts add up in practice (no BPE token spans a line break), but
    # the whole prompt is what is promised: trim the last choice until it fits.
    while total > budget_tokens and chosen:
        last = chosen[-1]
        over = total - budget_tokens
        text_tokens = counter.count(last.text)
        if last.cand.truncatable and text_tokens - over - 1 >= config.min_truncated_tokens:
            last.text = truncate_text(last.text, text_tokens - over - 1, counter)
            c = last.cand
            last.line = render_item(c.kind, last.text, c.sources, c.metadata, dated=last.prep.day is None)
            last.tokens = counter.count(last.line + "\n")
            last.truncated = True
        else:
            chosen.pop()
        sections, lines = _layout(chosen)
        prompt = _render(task, sections, lines)
        total = counter.count(prompt) if prompt else 0
    details["duplicates_dropped"] = sel.duplicates
    details["packed"] = {s.name: len(s.items) for s in sections}
    details["truncated"] = sum(c.truncated for c in chosen)
    return PersonalContext(
        user_id=user_id,
        query=query,
        task=task,
        budget_tokens=budget_tokens,
        tokens=total,
        sections=sections,
        needs_personalization=needs_personalization,
        info=details,
    )


class _Selector:
    """Greedy selection against exact per-line token counts (resumable, for the top-up)."""

    def __init__(
        self, preps: list[_Prep], task: str | None, budget: int, counter: TokenCounter, config: PackingConfig
    ) -> None:
        self.preps = preps
        self.budget = budget
        self.counter = counter
        self.config = config
        self.remaining = budget - counter.count(render_header(task) + "\n")
        self.used = dict.fromkeys(SECTION_NAMES, 0)
        self.opened: dict[str, bool] = {}  # section -> whether its label says "extractive"
        self.days: set[tuple[str, str]] = set()
        self.chosen: list[_Chosen] = []
        self.taken: set[int] = set()
        self.dedup = _Dedup(config.duplicate_cosine, len(preps))
        self.duplicates = 0
        self.order: list[_Prep] = []

    def _section_cost(self, name: str, extractive: bool) -> int:
        # Label, opening tag and closing tag, each with its line break.
        count = self.counter.count
        return count(render_section_open(name, extractive) + "\n") + count(SECTION_CLOSE + "\n")

    def offer(self, p: _Prep, limit: float) -> None:
        c, counter, config = p.cand, self.counter, self.config
        avail = min(self.remaining, limit - self.used[c.section])
        if 0 <= p._cost <= avail:
            pass
        elif avail < 2 or ((p._cost > avail or p.est > 2 * avail + _LINE_ESTIMATE)
                           and (not c.truncatable or avail < config.min_truncated_tokens + 2)):
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
            text = _fit(p, room, counter, config)
            if not text:
                return
            line = render_item(c.kind, text, c.sources, c.metadata, dated=day is None)
            cost = counter.count(line + "\n")
            truncated = True
        self.taken.add(id(p))
        self.dedup.add(c, _norm_words(text) if truncated else p.norm())
        self.chosen.append(_Chosen(p, text, line, cost, truncated))
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
        # sources. Usefulness falls steeply with relevance (the top hits hold
        # most answers), measured from the best candidate of any source, so a
        # weakly matching fact or a memory line's prior never displaces a turn
        # that matches the query better; it grows with the item's own text
        # (a longer turn says more), and the cost is the whole line, prefix and
        # citation included.
        best = max(p.cand.score for p in self.preps)
        tops: dict[str, float] = {}
        for p in self.preps:
            tops[p.cand.section] = max(tops.get(p.cand.section, -math.inf), p.cand.score)
        refs = {name: max(top, best - config.source_margin.get(name, 0.0)) for name, top in tops.items()}
        weights, sharp = config.weights, config.sharpness
        content, exponent, question = config.content_exponent, config.length_exponent, config.question_weight
        cap = max(config.content_cap, 1)

        def priority(p: _Prep) -> float:
            c = p.cand
            useful = weights.get(c.section, 1.0) * math.exp(sharp * (c.score - refs[c.section]))
            if question < 1.0 and c.kind == "message" and only_asks(c.text):
                useful *= question
            text = min(p.est - _LINE_ESTIMATE, cap)
            return useful * math.pow(max(text, 1.0), content) / math.pow(p.est, exponent)

        self.order = sorted(self.preps, key=priority, reverse=True)
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


def _fit(p: _Prep, room: int, counter: TokenCounter, config: PackingConfig) -> str:
    """Truncate the candidate's text so that its rendered line (with its break) takes at most ``room`` tokens."""
    c = p.cand
    target = room - p.overhead(counter)
    for _ in range(4):
        if target < config.min_truncated_tokens:
            return ""
        text = truncate_text(c.text, target, counter)
        if text and counter.count(render_item(c.kind, text, c.sources, c.metadata, dated=p.day is None)
                                  + "\n") <= room:
            return text
        target -= 2
    return ""


def _layout(chosen: list[_Chosen]) -> tuple[tuple[ContextSection, ...], dict[int, tuple[str | None, str]]]:
    """The sections in prompt order, and each item's day and rendered line (by ``id`` of the item)."""
    by_section: dict[str, list[tuple[tuple[Any, ...], ContextItem]]] = {name: [] for name in SECTION_NAMES}
    lines: dict[int, tuple[str | None, str]] = {}
    for c in chosen:
        meta = dict(c.cand.metadata)
        if c.truncated:
            meta["truncated"] = True
        item = ContextItem(c.cand.kind, c.text, float(c.cand.score), c.tokens, c.cand.sources, meta)
        lines[id(item)] = (c.prep.day, c.line)
        if c.prep.key is None:
            c.prep.key = sort_key(item)
        by_section[c.cand.section].append((c.prep.key, item))
    sections = tuple(
        ContextSection(name, tuple(item for _, item in sorted(items, key=_first)))  # type: ignore[arg-type]
        for name, items in by_section.items()
        if items
    )
    return sections, lines


def _first(pair: tuple[Any, ...]) -> Any:
    return pair[0]


def _render(task: str | None, sections: tuple[ContextSection, ...], lines: Mapping[int, tuple[str | None, str]]) -> str:
    """What ``render_prompt`` returns, from the lines already rendered."""
    return "\n".join(prompt_lines(task, sections, lambda item: lines[id(item)]))
