"""Helpers shared by the benchmark scripts (not part of the library)."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CachingEmbedder",
    "locomo_messages",
    "machine_info",
    "percentiles",
    "write_result",
]


class CachingEmbedder:
    """Wraps an embedder and remembers every text's vector (benchmarks re-ingest the same texts)."""

    def __init__(self, inner: Any) -> None:
        from personalize.embeddings import backend_of

        self.inner = inner
        self.name = inner.name
        self.backend = backend_of(inner)
        self.dim = inner.dim
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            for t, v in zip(todo, self.inner.embed(todo)):
                self._cache[t] = v
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.vstack([self._cache[t] for t in texts])


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(samples_ms, dtype=float)
    return {"p50_ms": round(float(np.percentile(arr, 50)), 3), "p95_ms": round(float(np.percentile(arr, 95)), 3),
            "mean_ms": round(float(arr.mean()), 3), "n": int(len(arr))}


def time_per_query(fn: Callable[[str], Any], queries: Sequence[str]) -> list[float]:
    """Milliseconds of ``fn(q)`` for each query, in order."""
    out = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _locomo_time(date: str | None, n: int) -> datetime | None:
    if not date:
        return None
    try:
        base = datetime.strptime(date.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return base + timedelta(seconds=30 * n)


def locomo_text(turn: Any) -> str:
    """A turn as the user shared it: the words, plus the caption of a shared photo."""
    text = turn.text
    if getattr(turn, "blip_caption", None):
        text = f"{text} [shares a photo: {turn.blip_caption}]"
    return text


def locomo_messages(conv: Any) -> list[dict[str, Any]]:
    """LoCoMo turns as ``add_messages`` input: speaker, session, time and the dia_id as id."""
    out = []
    for n, turn in enumerate(conv.turns):
        ts = _locomo_time(turn.date, n)
        out.append({
            "role": "user",
            "name": turn.speaker,
            "content": locomo_text(turn),
            "timestamp": ts.isoformat() if ts else None,
            "id": turn.dia_id,
            "session": f"session_{turn.session}",
        })
    return out


def machine_info() -> dict[str, Any]:
    import os

    return {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_result(path: str | Path, result: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine_info(), **result}
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {path}")


class Timer:
    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.ms = (time.perf_counter() - self.start) * 1000
