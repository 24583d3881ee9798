"""Plots for docs/benchmarks.md from the JSON results of ``make bench``.

    python -m tests.bench.plots --results bench-results --out docs/img
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def plot_fusion(data: dict[str, Any], out: Path, plt: Any) -> None:
    """LoCoMo R@5 and PrefEval hit@5 as the BM25 weight varies, beside the baselines."""
    loc, pref = data["locomo"], data["prefeval_explicit"]
    ws = sorted(float(k.split("=")[1]) for k in loc if k.startswith("hybrid w="))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(ws, [loc[f"hybrid w={w}"]["R@5"] for w in ws], "o-", label="LoCoMo R@5 (hybrid)")
    ax.plot(ws, [pref[f"hybrid w={w}"]["hit@5"] for w in ws], "s-", label="PrefEval explicit hit@5 (hybrid)")
    for value, style, label in ((loc["bm25"]["R@5"], "C0:", "LoCoMo BM25"), (loc["dense"]["R@5"], "C0--", "LoCoMo dense"),
                                (pref["dense"]["hit@5"], "C1--", "PrefEval dense"), (pref["bm25"]["hit@5"], "C1:", "PrefEval BM25")):
        ax.axhline(value, linestyle=style[2:], color=style[:2], linewidth=1, label=label)
    ax.axvline(0.3, color="grey", linewidth=0.8)
    ax.set_xlabel("BM25 weight w (default 0.3)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Hybrid fusion calibration (dev data)")
    fig.tight_layout()
    fig.savefig(out / "bench-fusion.png", dpi=110)


def plot_context(data: dict[str, Any], out: Path, plt: Any) -> None:
    """LoCoMo evidence recall vs budget, one panel per split: packed context vs plain top-k cut to the budget."""
    budgets = [256, 512, 1024, 2048]
    splits = [s for s in ("tune", "report") if s in data["locomo"]]
    fig, axes = plt.subplots(1, len(splits), figsize=(5.2 * len(splits), 3.6), sharey=True, squeeze=False)
    for ax, split in zip(axes[0], splits):
        loc = data["locomo"][split]
        ax.plot(budgets, [loc["retrieval_only"][f"topk@{b}"] for b in budgets], "o--", label="plain top-k, cut to budget")
        for variant, label in (("retrieval_only", "packed (no refresh)"),
                               ("with_refresh", "packed (summary+persona+retrieval)")):
            if variant in loc:
                ax.plot(budgets, [loc[variant][f"packed@{b}"] for b in budgets], "s-", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.set_xlabel("token budget")
        ax.set_ylim(0.4, 1)
        names = ", ".join(loc.get("with_refresh", {}).get("conversations", []))
        ax.set_title(f"{split} split ({names})" if names else f"{split} split", fontsize=9)
    axes[0][0].set_ylabel("turn-evidence recall")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("LoCoMo: evidence in the context per token")
    fig.tight_layout()
    fig.savefig(out / "bench-context.png", dpi=110)


def plot_peers(data: dict[str, Any], out: Path, plt: Any) -> None:
    """search()/context() p50 beside the peers, per corpus size."""
    sizes = list(data["results"])
    systems = [k for k, v in data["results"][sizes[0]].items() if isinstance(v, dict) and "p50_ms" in v]
    fig, ax = plt.subplots(figsize=(7.2, 3.8))
    width = 0.8 / max(1, len(systems))
    for n, system in enumerate(systems):
        vals = [data["results"][s].get(system, {}).get("p50_ms", 0) for s in sizes]
        ax.bar([i + n * width for i in range(len(sizes))], vals, width, label=system)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sizes))], [f"{int(s):,} chunks" for s in sizes])
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency (ms, log)")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("Query latency, embedding included (2 CPU cores)")
    fig.tight_layout()
    fig.savefig(out / "bench-peers.png", dpi=110)


def plot_graph(data: dict[str, Any], out: Path, plt: Any) -> None:
    """Where a warm context() goes: the nodes alone, LangGraph's shapes, the shipped graph (bench_graph)."""
    rows = [(label, v) for label, v in data.items() if isinstance(v, dict) and "p50_ms" in v]
    fig, ax = plt.subplots(figsize=(8.4, 0.42 * len(rows) + 1.2))
    labels = [label for label, _ in rows][::-1]
    p50 = [v["p50_ms"] for _, v in rows][::-1]
    p95 = [v["p95_ms"] for _, v in rows][::-1]
    ax.barh(labels, p95, color="#c9d6e8", label="p95")
    ax.barh(labels, p50, color="#3b6ea8", label="p50")
    for y, value in enumerate(p50):
        ax.text(value + 0.05, y, f"{value:.1f}", va="center", fontsize=7)
    ax.set_xlabel("ms per call (10k chunks, query embedding cached)")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"context(): the work and LangGraph's share ({int(data.get('size', 0)):,} chunks)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "bench-graph.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", default="bench-results")
    parser.add_argument("--out", default="docs/img")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, out = Path(args.results), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, fn in (("retrieval-quality", plot_fusion), ("retrieval", plot_fusion), ("context", plot_context),
                     ("peers", plot_peers), ("graph", plot_graph)):
        data = _load(results, name)
        if data is None:
            continue
        try:
            fn(data, out, plt)
            print(f"plotted {name}")
        except KeyError as exc:
            print(f"skipped {name}: missing {exc}")


if __name__ == "__main__":
    main()
