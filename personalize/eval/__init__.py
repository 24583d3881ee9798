"""Evaluation of personalization quality on public benchmark formats.

- :func:`evaluate_lamp`: LaMP-format files, the summary + retrieval grid, LaMP's metrics.
- :mod:`personalize.eval.metrics`: accuracy, macro-F1, MAE, RMSE, ROUGE-1, ROUGE-L.
"""

from __future__ import annotations

from .lamp import DEFAULT_GRID, GridPoint, LampExample, LampResult, evaluate_lamp, load_lamp, parse_grid
from .metrics import classification_scores, rating_scores, rouge_scores

__all__ = [
    "DEFAULT_GRID",
    "GridPoint",
    "LampExample",
    "LampResult",
    "classification_scores",
    "evaluate_lamp",
    "load_lamp",
    "parse_grid",
    "rating_scores",
    "rouge_scores",
]
