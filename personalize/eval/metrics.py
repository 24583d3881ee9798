"""LaMP's metrics, implemented here (no downloads): accuracy and macro-F1, MAE and RMSE, ROUGE-1 and ROUGE-L.

ROUGE follows the ``rouge_score`` package's defaults as LaMP's evaluation
uses them: lower-cased, non-alphanumeric characters treated as spaces, no
stemming, F-measure averaged over examples.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

__all__ = [
    "accuracy",
    "classification_scores",
    "lcs_length",
    "macro_f1",
    "mae",
    "rating_scores",
    "rmse",
    "rouge_1",
    "rouge_l",
    "rouge_scores",
    "rouge_tokens",
    "to_rating",
]

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def accuracy(golds: Sequence[str], preds: Sequence[str]) -> float:
    """Share of exact (stripped) matches."""
    if not golds:
        return 0.0
    return sum(g.strip() == p.strip() for g, p in zip(golds, preds)) / len(golds)


def macro_f1(golds: Sequence[str], preds: Sequence[str], labels: Sequence[str] | None = None) -> float:
    """F1 per label, averaged with equal weight (scikit-learn's ``average="macro"``).

    Args:
        golds: gold labels.
        preds: predicted labels.
        labels: the label set to average over (default: every gold or predicted label).
    """
    golds = [g.strip() for g in golds]
    preds = [p.strip() for p in preds]
    names = list(labels) if labels else sorted(set(golds) | set(preds))
    if not names:
        return 0.0
    scores = []
    for label in names:
        tp = sum(g == label and p == label for g, p in zip(golds, preds))
        fp = sum(g != label and p == label for g, p in zip(golds, preds))
        fn = sum(g == label and p != label for g, p in zip(golds, preds))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


def to_rating(pred: str, gold: float, low: float = 1.0, high: float = 5.0) -> float:
    """A predicted score as a number; an unparseable one counts as the worst answer (LaMP's rule)."""
    try:
        return float(pred.strip())
    except ValueError:
        return low if abs(high - gold) < abs(low - gold) else high


def mae(golds: Sequence[float], preds: Sequence[float]) -> float:
    """Mean absolute error."""
    return sum(abs(g - p) for g, p in zip(golds, preds)) / len(golds) if golds else 0.0


def rmse(golds: Sequence[float], preds: Sequence[float]) -> float:
    """Root mean squared error."""
    return math.sqrt(sum((g - p) ** 2 for g, p in zip(golds, preds)) / len(golds)) if golds else 0.0


def rouge_tokens(text: str) -> list[str]:
    """``rouge_score``'s default tokenization: lower case, alphanumeric runs."""
    return [t for t in _NON_ALNUM.split(text.lower()) if t]


def _f(overlap: float, pred_len: int, gold_len: int) -> float:
    if overlap == 0 or pred_len == 0 or gold_len == 0:
        return 0.0
    precision, recall = overlap / pred_len, overlap / gold_len
    return 2 * precision * recall / (precision + recall)


def rouge_1(gold: str, pred: str) -> float:
    """ROUGE-1 F-measure of one prediction."""
    g, p = rouge_tokens(gold), rouge_tokens(pred)
    overlap = sum((Counter(g) & Counter(p)).values())
    return _f(overlap, len(p), len(g))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        row = [0]
        for j, y in enumerate(b, start=1):
            row.append(previous[j - 1] + 1 if x == y else max(previous[j], row[j - 1]))
        previous = row
    return previous[-1]


def rouge_l(gold: str, pred: str) -> float:
    """ROUGE-L F-measure (sentence-level LCS) of one prediction."""
    g, p = rouge_tokens(gold), rouge_tokens(pred)
    return _f(lcs_length(g, p), len(p), len(g))


def classification_scores(golds: Sequence[str], preds: Sequence[str], labels: Sequence[str] | None = None) -> dict[str, float]:
    """``{"accuracy", "f1"}`` as LaMP reports them for classification tasks."""
    return {"accuracy": accuracy(golds, preds), "f1": macro_f1(golds, preds, labels)}


def rating_scores(golds: Sequence[str], preds: Sequence[str]) -> dict[str, float]:
    """``{"mae", "rmse"}`` as LaMP reports them for the rating task."""
    gold_values = [float(g) for g in golds]
    pred_values = [to_rating(p, g) for p, g in zip(preds, gold_values)]
    return {"mae": mae(gold_values, pred_values), "rmse": rmse(gold_values, pred_values)}


def rouge_scores(golds: Sequence[str], preds: Sequence[str]) -> dict[str, float]:
    """``{"rouge-1", "rouge-L"}``: F-measures averaged over examples."""
    if not golds:
        return {"rouge-1": 0.0, "rouge-L": 0.0}
    n = len(golds)
    return {
        "rouge-1": sum(rouge_1(g, p) for g, p in zip(golds, preds)) / n,
        "rouge-L": sum(rouge_l(g, p) for g, p in zip(golds, preds)) / n,
    }
