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

This module holds the entry point and the public types; the work is done in
private helpers: ``_selection`` (the greedy passes), ``_usefulness`` (rule 3),
``_dedup`` (rule 4) and ``_lines`` (rendering, counting and truncating one
candidate's line).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..tokens import TokenCounter, default_token_counter
from ._lines import Chosen, Prep, norm_words, truncate_text
from ._selection import Selector
from ._usefulness import only_asks
from .context import (
    REF_PLACEHOLDER,
    SECTION_NAMES,
    ContextItem,
    ContextSection,
    PersonalContext,
    SectionName,
    Source,
    prompt_lines,
    render_item,
    sort_key,
)

# Sections whose scores are query similarities (comparable with each other).
_SIMILARITY_SECTIONS = frozenset({"retrieved", "persona"})

__all__ = ["RECALL_PACKING", "Candidate", "PackingConfig", "only_asks", "pack", "truncate_text"]

logger = logging.getLogger(__name__)


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
        relative_floor: retrieved chunks and persona facts scoring more than this
            below the best of them are never packed, even with room to spare:
            filling a budget with a fact that barely matches ("Prefers Python"
            for "recommend a movie") only distracts the model. Summaries and
            memory lines carry priors, not similarities, and are exempt, except a
            memory line that restates a dropped fact (holds its words in order),
            which goes with it.
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
    relative_floor: float | None = 0.5
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
        if self.relative_floor is not None and not self.relative_floor >= 0.0:
            raise ConfigError("relative_floor must be >= 0 (or None: no floor)")
        if self.min_truncated_tokens < 1:
            raise ConfigError("min_truncated_tokens must be >= 1")


#: The packing rules for a question about what happened (``query_need`` is
#: ``recall``): the retrieved evidence in relevance order (usefulness barely
#: depends on length), turns that only ask last, the last item truncated while
#: 6 tokens of it fit; facts at a fifth of their weight, the summary and memory
#: lines only with room to spare (weight 0: they come after everything else).
#: Tuned on LoCoMo conv-26 and conv-30 (docs/benchmarks.md).
RECALL_PACKING = PackingConfig(
    reserve={},
    sharpness=40.0,
    content_exponent=0.3,
    length_exponent=0.3,
    question_weight=0.0001,
    min_truncated_tokens=6,
    weights={"summary": 0.0, "persona": 0.2, "memory": 0.0, "retrieved": 1.0},
)


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
    if config.relative_floor is not None:
        similar = [c.score for c in cands if c.section in _SIMILARITY_SECTIONS]
        if similar:
            floor = max(similar) - config.relative_floor
            below = [c for c in cands if c.section in _SIMILARITY_SECTIONS and c.score < floor]
            cands = [c for c in cands if c.section not in _SIMILARITY_SECTIONS or c.score >= floor]
            cands = _without_restated(cands, [c for c in below if c.section == "persona"])
    details: dict[str, Any] = dict(info or {})
    details["candidates"] = {name: sum(c.section == name for c in cands) for name in SECTION_NAMES}
    sel = Selector([Prep(c) for c in cands], task, budget_tokens, counter, config)
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
            last.line = render_item(c.kind, last.text, c.sources, c.metadata, dated=last.prep.day is None, ref=1)
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


def _without_restated(cands: list[Candidate], dropped_facts: list[Candidate]) -> list[Candidate]:
    """``cands`` less the memory lines that restate a fact the relevance floor dropped.

    A memory line carries a prior, not a query similarity, so the floor cannot
    judge it; but one that restates a persona fact (the fact's words, in order,
    within the line, as in the extractive memory's "Is lactose intolerant (since
    2024-03-05)") is exactly as relevant as that fact, and goes with it.
    """
    if not dropped_facts:
        return cands
    facts = [f" {n} " for n in (norm_words(f.text) for f in dropped_facts) if n]
    return [
        c for c in cands
        if c.section != "memory" or not any(f in f" {norm_words(c.text)} " for f in facts)
    ]


def _layout(chosen: list[Chosen]) -> tuple[tuple[ContextSection, ...], dict[int, tuple[str | None, str]]]:
    """The sections in prompt order, and each item's day and rendered line (by ``id`` of the item)."""
    by_section: dict[str, list[tuple[tuple[Any, ...], ContextItem]]] = {name: [] for name in SECTION_NAMES}
    lines: dict[int, tuple[str | None, str]] = {}
    for c in chosen:
        meta = dict(c.cand.metadata)
        if c.truncated:
            meta["truncated"] = True
        item = ContextItem(c.cand.kind, c.text, float(c.cand.score), c.tokens, c.cand.sources, meta)
        lines[id(item)] = (c.prep.day, c.line[len(REF_PLACEHOLDER):])  # prompt_lines numbers it
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
