"""Usefulness per token (rule 3 of :mod:`personalize.agent.packing`): the order of the competitive passes.

A candidate is worth ``weight * exp(sharpness * (score - ref)) * text ** content_exponent
/ line ** length_exponent``: relevance measured from the best candidate of any
source (persona facts get a margin), content growing with the item's text,
cost the whole line; chat turns that only ask (:func:`only_asks`) count less.
``only_asks`` is also importable as ``personalize.agent.packing.only_asks``.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from ._lines import LINE_ESTIMATE, Prep

if TYPE_CHECKING:
    from .packing import PackingConfig

__all__ = ["by_usefulness", "only_asks"]

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


def by_usefulness(preps: list[Prep], config: PackingConfig) -> list[Prep]:
    """``preps`` (not empty), most useful per token first."""
    # Usefulness falls steeply with relevance (the top hits hold most answers),
    # measured from the best candidate of any source, so a weakly matching fact
    # or a memory line's prior never displaces a turn that matches the query
    # better; it grows with the item's own text (a longer turn says more), and
    # the cost is the whole line, prefix and citation included.
    best = max(p.cand.score for p in preps)
    tops: dict[str, float] = {}
    for p in preps:
        tops[p.cand.section] = max(tops.get(p.cand.section, -math.inf), p.cand.score)
    refs = {name: max(top, best - config.source_margin.get(name, 0.0)) for name, top in tops.items()}
    weights, sharp = config.weights, config.sharpness
    content, exponent, question = config.content_exponent, config.length_exponent, config.question_weight
    cap = max(config.content_cap, 1)

    def priority(p: Prep) -> float:
        c = p.cand
        useful = weights.get(c.section, 1.0) * math.exp(sharp * (c.score - refs[c.section]))
        if question < 1.0 and c.kind == "message" and only_asks(c.text):
            useful *= question
        text = min(p.est - LINE_ESTIMATE, cap)
        return useful * math.pow(max(text, 1.0), content) / math.pow(p.est, exponent)

    return sorted(preps, key=priority, reverse=True)
