"""Task statistics of a user's items: the "task-aware" part of a summary, computed exactly.

- classification: the user's label distribution (most common tags);
- rating: the score distribution, and the typical score of reviews that read
  positive vs. negative (a small sentiment lexicon decides which is which);
- generation: the user's style as a template (length, casing, punctuation,
  common opening words, hashtags/mentions);
- topical and chat: interests as frequent terms and phrases.

Each function returns short lines of text; both summarizers use them (the LLM
gets them as pre-computed facts about *all* items, since it only reads a
selection).
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence

from ..tasks import Task
from .selection import ProfileItem

__all__ = ["interest_lines", "label_lines", "rating_lines", "sentiment", "style_lines", "task_lines"]

_TOKEN = re.compile(r"[a-z][a-z'+#-]{2,}")
_STOP = frozenset(
    "the and for that this with you your are was were have has had not but all any can our out "
    "one two its it's his her him she they them their there what when where which who whom why how "
    "from into about over under then than too very just also more most some such only own same "
    "other been being would could should will shall may might must does did doing done get got "
    "like really much many well even still back here now new way want need know think make made "
    "time day days year years week weeks thing things something anything lot good great best "
    "better first last next i'm i've i'd i'll don't can't it's that's let's you're we're isn't "
    "yes yeah okay hello thanks thank please sure maybe because while each every both few let "
    "said say says see saw use used using go going went come came take took give gave tell told "
    "ask asked help try tried look looking find found keep kept start started able around "
    "these those ours mine myself yourself again ever never always often usually sometimes "
    "subject from date title text tags rating score id row prefer prefers preferred love loves "
    "loved enjoy planning plan side view different topic question ideas idea suggest tips perfect "
    "nice helpful hi again update also which should would".split()
)
_POSITIVE = frozenset(
    "good great excellent amazing awesome love loved loves perfect best wonderful fantastic happy "
    "recommend recommended nice easy works worked beautiful favorite favourite brilliant superb "
    "solid sturdy comfortable fast reliable pleased satisfied outstanding enjoy enjoyed impressive "
    "gorgeous delicious fun helpful worth quality value".split()
)
_NEGATIVE = frozenset(
    "bad poor terrible awful horrible hate hated worst broke broken broken. disappointing "
    "disappointed useless waste cheap flimsy returned return refund defective slow difficult "
    "hard problem problems issue issues stopped fails failed failure junk mediocre boring "
    "uncomfortable annoying wrong missing leaks leaked cracked unfortunately overpriced".split()
)
_NEGATORS = frozenset("not no never n't don't didn't doesn't isn't wasn't won't can't couldn't hardly".split())


def sentiment(text: str) -> int:
    """A rough polarity of a review: positive words minus negative ones (negation flips)."""
    score = 0
    words = re.findall(r"[a-z']+", text.lower())
    for i, word in enumerate(words):
        value = 1 if word in _POSITIVE else -1 if word in _NEGATIVE else 0
        if value and any(w in _NEGATORS for w in words[max(0, i - 3):i]):
            value = -value
        score += value
    return score


def _pct(count: int, total: int) -> str:
    return f"{round(100 * count / total)}%" if total else "0%"


def label_lines(task: Task, items: Sequence[ProfileItem]) -> list[str]:
    """The user's label distribution for a classification task."""
    labels = Counter()
    labelled = 0
    for item in items:
        found = task.item_labels(item.text, item.metadata)
        if found:
            labelled += 1
            labels.update(found)
    if not labelled:
        return []
    top = ", ".join(f"{label} {_pct(n, labelled)}" for label, n in labels.most_common(8))
    lines = [f"Labels used most (share of {labelled} labelled items): {top}."]
    if len(labels) > 8:
        lines.append(f"{len(labels)} distinct labels in all; rarely used: "
                     + ", ".join(label for label, _ in labels.most_common()[-3:]) + ".")
    return lines


def rating_lines(task: Task, items: Sequence[ProfileItem]) -> list[str]:
    """Score distribution and typical scores of positive and negative reviews."""
    scored = [(task.item_score(i.text, i.metadata), i.text) for i in items]
    scored = [(s, t) for s, t in scored if s is not None]
    if not scored:
        return []
    scores = [s for s, _ in scored]
    dist = Counter(scores)
    shown = ", ".join(f"{_fmt(s)}: {_pct(n, len(scores))}" for s, n in sorted(dist.items(), reverse=True))
    lines = [f"Scores given ({len(scores)} items): mean {statistics.fmean(scores):.1f}, "
             f"median {_fmt(statistics.median(scores))}; distribution {shown}."]
    positive = [s for s, t in scored if sentiment(t) > 0]
    negative = [s for s, t in scored if sentiment(t) < 0]
    parts = []
    if positive:
        parts.append(f"reviews that read positive get {_fmt(statistics.median(positive))} "
                     f"(median of {len(positive)})")
    if negative:
        parts.append(f"reviews that read negative get {_fmt(statistics.median(negative))} "
                     f"(median of {len(negative)})")
    if parts:
        lines.append("Typical scores: " + "; ".join(parts) + ".")
    return lines


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _casing(text: str) -> str:
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]*", text)]
    if not words:
        return "other"
    if all(w.islower() for w in words):
        return "all lower case"
    if all(w.isupper() for w in words if len(w) > 1) and any(len(w) > 1 for w in words):
        return "all caps"
    long = [w for w in words if len(w) > 3]
    if long and all(w[0].isupper() for w in long):
        return "Title Case"
    return "sentence case"


def style_lines(task: Task, items: Sequence[ProfileItem]) -> list[str]:
    """The user's writing style for a generation task, as a template."""
    outputs = [o for o in (task.item_output(i.text, i.metadata) for i in items) if o]
    if not outputs:
        return []
    lengths = sorted(len(o.split()) for o in outputs)
    low, high = lengths[len(lengths) // 4], lengths[(3 * len(lengths)) // 4]
    casing = Counter(_casing(o) for o in outputs).most_common(1)[0]
    n = len(outputs)
    ends = Counter(o.rstrip()[-1] if o.rstrip()[-1:] in ".!?" else "none" for o in outputs)
    end, end_n = ends.most_common(1)[0]
    features = []
    for label, pattern in (("a colon", r":"), ("a number", r"\d"), ("a question mark", r"\?"),
                           ("an exclamation mark", r"!"), ("a hashtag", r"#\w"), ("a mention", r"@\w"),
                           ("a link", r"https?://"), ("an emoji", r"[\U0001F300-\U0001FAFF\u2600-\u27BF]")):
        share = sum(bool(re.search(pattern, o)) for o in outputs) / n
        if share >= 0.2:
            features.append(f"{label} in {round(100 * share)}%")
    openers = Counter(o.split()[0].strip("\"'").lower() for o in outputs if o.split())
    common = [f"'{w}'" for w, c in openers.most_common(4) if c >= 2]
    what = "outputs" if not task.output_keys else task.output_keys[0] + "s"
    lines = [
        f"Style template from {n} of the user's {what}: usually {low}-{high} words "
        f"(median {lengths[len(lengths) // 2]}); {casing[0]} ({_pct(casing[1], n)}); "
        + ("no final punctuation" if end == "none" else f"ends with '{end}'") + f" ({_pct(end_n, n)})."
    ]
    if features:
        lines.append("Often contains " + ", ".join(features) + ".")
    if common:
        lines.append("Common opening words: " + ", ".join(common) + ".")
    return lines


def interest_lines(items: Sequence[ProfileItem], *, top: int = 12) -> list[str]:
    """Frequent content terms and two-word phrases (by the number of items using them)."""
    if not items:
        return []
    terms: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    for item in items:
        tokens = [t.strip("'-") for t in _TOKEN.findall(item.text.lower())]
        tokens = [t for t in tokens if t and t not in _STOP]
        terms.update(set(tokens))
        pairs.update({f"{a} {b}" for a, b in zip(tokens, tokens[1:]) if a != b})
    floor = 2 if len(items) >= 4 else 1
    words = [t for t, c in terms.most_common(top * 2) if c >= floor][:top]
    phrases = [p for p, c in pairs.most_common(top) if c >= max(2, floor)][:6]
    lines = []
    if words:
        lines.append("Frequent topics: " + ", ".join(words) + ".")
    if phrases:
        lines.append("Recurring phrases: " + ", ".join(phrases) + ".")
    return lines


def task_lines(task: Task, items: Sequence[ProfileItem]) -> list[str]:
    """The statistics that fit ``task``'s kind."""
    if task.kind == "classification":
        return label_lines(task, items) + interest_lines(items, top=8)
    if task.kind == "rating":
        return rating_lines(task, items)
    if task.kind == "generation":
        return style_lines(task, items) + interest_lines(items, top=8)
    return interest_lines(items)
