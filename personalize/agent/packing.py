"""Pack candidate items from the three knowledge sources under a token budget.

The rules, in order:

1. **Budget, exactly.** The rendered prompt (header, section labels, tags,
   citations, newlines: everything :meth:`PersonalContext.to_prompt` returns) is
   measured with the token counter and never exceeds ``budget_tokens``. Token
   counts of concatenated strings are not exactly additive in BPE, so the
   greedy selection works on per-line counts and a final pass measures the
   whole prompt and trims the last-chosen item until it fits.
2. **Reserved share.** A task summary is dense by construction: it condenses
   many chunks, which is why summary-augmented retrieval matches retrieval
   alone with far fewer retrieved tokens. So it first gets a reserved share of
   the budget (truncated at a line or sentence boundary to fit it).
3. **Usefulness per token.** Every other candidate competes across sections
   by ``score / tokens ** length_exponent``, with per-section caps so that one
   kind cannot crowd out the others; a second, uncapped pass hands what is left
   to whatever remains (no summary yet -> more retrieved items).
4. **Near-duplicates** are dropped when a candidate is too close to an item
   already chosen: cosine of the chunk embeddings, the same normalized text, or
   its normalized text contained in the chosen item's packed text.
5. **Truncation.** A candidate that does not fit is truncated when it is the
   best remaining one and a useful part of it still fits; otherwise it is
   skipped and smaller items may still fit.
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
    render_header,
    render_item,
    render_prompt,
    render_section_open,
)

__all__ = ["Candidate", "PackingConfig", "pack", "truncate_text"]

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"[.!?\u2026](?=\s)|\n")
_ELLIPSIS = "\u2026"


@dataclass(frozen=True)
class PackingConfig:
    """How :func:`pack` spends the budget.

    Attributes:
        reserve: share of the budget reserved, per section, for its best items
            before anything else is packed (summaries and memory are dense).
        caps: the most of the budget a section may take in the competitive pass.
        length_exponent: priority is ``usefulness / tokens ** length_exponent``;
            1.0 is strictly per token, 0.0 ignores length.
        sharpness: usefulness is ``exp(sharpness * score)``: how much more a
            slightly more relevant item is worth (calibrated on LoCoMo, see
            docs/agent.md); large values approach plain relevance order.
        weights: usefulness of each source's best item (scores are compared
            within a source, from its best item down).
        min_truncated_tokens: the smallest part of an item worth packing.
        duplicate_cosine: chunks at least this similar to a chosen one are dropped.
        min_score: candidates scoring below this are never packed.
    """

    reserve: Mapping[str, float] = field(default_factory=lambda: {"summary": 0.3})
    caps: Mapping[str, float] = field(
        default_factory=lambda: {"summary": 0.5, "memory": 0.2, "persona": 0.35, "retrieved": 1.0}
    )
    length_exponent: float = 1.0
    sharpness: float = 40.0
    weights: Mapping[str, float] = field(
        default_factory=lambda: {"summary": 1.0, "persona": 1.0, "memory": 0.25, "retrieved": 1.0}
    )
    min_truncated_tokens: int = 12
    duplicate_cosine: float = 0.95
    min_score: float = 0.0

    def __post_init__(self) -> None:
        for name, value in [*self.reserve.items(), *self.caps.items(), *self.weights.items()]:
            if name not in SECTION_NAMES or not 0.0 <= value <= 1.0:
                raise ConfigError(f"reserve/caps need a section name and a share in [0, 1]; got {name}={value}")
        if not 0.0 <= self.length_exponent <= 2.0:
            raise ConfigError("length_exponent must be within [0, 2]")
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


@dataclass
class _Chosen:
    cand: Candidate
    text: str
    tokens: int
    truncated: bool


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


class _Dedup:
    """Near-duplicate test of a candidate against the items chosen so far."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.keys: set[int] = set()
        self.norms: list[str] = []
        self.vectors: list[np.ndarray] = []

    def is_duplicate(self, cand: Candidate, norm: str) -> bool:
        if cand.section == "retrieved" and cand.sources and cand.sources[0].chunk_id in self.keys:
            return True
        padded = f" {norm} "
        for other in self.norms:
            # Only a candidate that adds nothing is a duplicate: one whose words
            # already appear (in order) in a chosen item. A longer item that
            # contains a chosen short one still carries more.
            if norm == other or (norm.count(" ") >= 2 and padded in f" {other} "):
                return True
        if cand.vector is not None and self.vectors:
            sims = np.stack(self.vectors) @ np.asarray(cand.vector, dtype=np.float32)
            if float(sims.max()) >= self.threshold:
                return True
        return False

    def add(self, cand: Candidate, packed_norm: str) -> None:
        if cand.section == "retrieved" and cand.sources:
            self.keys.add(cand.sources[0].chunk_id)
        # The packed (maybe truncated) text: what a later candidate must not repeat.
        self.norms.append(packed_norm)
        if cand.vector is not None:
            self.vectors.append(np.asarray(cand.vector, dtype=np.float32))


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
    cands = [c for c in candidates if c.text and c.text.strip() and c.score >= config.min_score]
    details: dict[str, Any] = dict(info or {})
    details["candidates"] = {name: sum(c.section == name for c in cands) for name in SECTION_NAMES}

    # Per-candidate line costs and normalized words, computed once for both selections.
    # A line is counted with its newline: BPE merges "." or ">" with it, so this
    # is nearly exact and the second selection below is rarely needed.
    prep = {id(c): (counter.count(render_item(c.kind, c.text, c.sources, c.metadata) + "\n"), _norm_words(c.text))
            for c in cands}
    chosen, estimate = _select(cands, prep, task, budget_tokens, counter, config, details, 0) if cands else ([], 0)
    sections = _sections(chosen)
    prompt = render_prompt(task, sections)
    total = counter.count(prompt) if prompt else 0
    if chosen and estimate - total > 0 and budget_tokens - total > config.min_truncated_tokens:
        # BPE merges newlines with their neighbours ('.\n', '>\n'), so per-line
        # counts overestimate; select again with the measured slack added back.
        chosen, _ = _select(cands, prep, task, budget_tokens, counter, config, details, estimate - total)
        sections = _sections(chosen)
        prompt = render_prompt(task, sections)
        total = counter.count(prompt) if prompt else 0
    # Per-line counts are not exactly additive: trim the last choice until the
    # whole prompt fits.
    while total > budget_tokens and chosen:
        last = chosen[-1]
        over = total - budget_tokens
        text_tokens = counter.count(last.text)
        if last.cand.truncatable and text_tokens - over - 1 >= config.min_truncated_tokens:
            last.text = truncate_text(last.text, text_tokens - over - 1, counter)
            last.truncated = True
        else:
            chosen.pop()
        sections = _sections(chosen)
        prompt = render_prompt(task, sections)
        total = counter.count(prompt) if prompt else 0
    for c in chosen:  # each item's own line, as rendered (the packer's estimates included the newline)
        c.tokens = counter.count(render_item(c.cand.kind, c.text, c.cand.sources, c.cand.metadata))
    sections = _sections(chosen)
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


def _select(
    cands: list[Candidate],
    prep: Mapping[int, tuple[int, str]],
    task: str | None,
    budget: int,
    counter: TokenCounter,
    config: PackingConfig,
    details: dict[str, Any],
    bonus: int,
) -> tuple[list[_Chosen], int]:
    """Greedy selection; returns the choices and the tokens they are estimated to take."""
    header = counter.count(render_header(task))
    remaining = budget - header - 1 + bonus
    start = remaining
    if remaining <= 0:
        return [], 0
    section_cost = {  # the longer, "extractive" label: never underestimate
        name: counter.count(render_section_open(name, True)) + counter.count(SECTION_CLOSE) + 2
        for name in SECTION_NAMES
    }
    lines = {key: value[0] for key, value in prep.items()}
    used = dict.fromkeys(SECTION_NAMES, 0)
    chosen: list[_Chosen] = []
    taken: set[int] = set()
    dedup = _Dedup(config.duplicate_cosine)
    duplicates = 0

    def offer(c: Candidate, limit: float) -> None:
        nonlocal remaining, duplicates
        opening = section_cost[c.section] if used[c.section] == 0 else 0
        room = int(min(remaining - opening, limit - used[c.section] - opening))
        need, norm = prep[id(c)]
        if need > room:
            # Truncate only when a useful part fits: room minus the line's own overhead.
            overhead = need - 1 - counter.count(c.text)
            if not c.truncatable or room - 1 - overhead < config.min_truncated_tokens:
                return
        if dedup.is_duplicate(c, norm):
            taken.add(id(c))
            duplicates += 1
            return
        if need <= room:
            text, cost, truncated = c.text, need, False
        else:
            text = _fit(c, room - 1, counter, config)
            if not text:
                return
            cost = counter.count(render_item(c.kind, text, c.sources, c.metadata) + "\n")
            truncated = True
        taken.add(id(c))
        dedup.add(c, _norm_words(text) if truncated else norm)
        chosen.append(_Chosen(c, text, cost - 1, truncated))
        used[c.section] += cost + opening
        remaining -= cost + opening

    # Pass 0: reserved shares, best item first within each section.
    for name, share in config.reserve.items():
        limit = share * budget
        for c in sorted((c for c in cands if c.section == name), key=lambda c: -c.score):
            if remaining <= 0 or used[name] >= limit:
                break
            offer(c, limit)
    # Pass 1 (capped) and pass 2 (uncapped): usefulness per token across sections.
    # Usefulness rises steeply with relevance (the top hits hold most of the
    # answers): exp(sharpness * score). Scores are only comparable within a
    # source (fused hybrid scores, fact similarities, memory priors), so each is
    # measured from its source's best item and weighted by the source.
    top = {name: max((c.score for c in cands if c.section == name), default=0.0) for name in SECTION_NAMES}

    def priority(c: Candidate) -> float:
        useful = config.weights.get(c.section, 1.0) * math.exp(config.sharpness * (c.score - top[c.section]))
        return useful / math.pow(max(lines[id(c)], 8), config.length_exponent)

    order = sorted(cands, key=lambda c: -priority(c))
    for capped in (True, False):
        for c in order:
            if remaining <= 2:  # no line is shorter
                break
            if id(c) in taken:
                continue
            offer(c, config.caps.get(c.section, 1.0) * budget if capped else math.inf)
    details["duplicates_dropped"] = duplicates
    return chosen, header + start - remaining - bonus + 1


def _fit(c: Candidate, room: int, counter: TokenCounter, config: PackingConfig) -> str:
    """Truncate ``c``'s text so that its rendered line takes at most ``room`` tokens."""
    overhead = counter.count(render_item(c.kind, "", c.sources, c.metadata))
    target = room - overhead
    for _ in range(4):
        if target < config.min_truncated_tokens:
            return ""
        text = truncate_text(c.text, target, counter)
        if text and counter.count(render_item(c.kind, text, c.sources, c.metadata)) <= room:
            return text
        target -= 2
    return ""


def _sections(chosen: list[_Chosen]) -> tuple[ContextSection, ...]:
    by_section: dict[str, list[ContextItem]] = {name: [] for name in SECTION_NAMES}
    for c in chosen:
        meta = dict(c.cand.metadata)
        if c.truncated:
            meta["truncated"] = True
        by_section[c.cand.section].append(
            ContextItem(c.cand.kind, c.text, float(c.cand.score), c.tokens, c.cand.sources, meta)
        )
    return tuple(
        ContextSection(name, tuple(sorted(items, key=lambda i: -i.score)))  # type: ignore[arg-type]
        for name, items in by_section.items()
        if items
    )
