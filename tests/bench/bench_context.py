"""Packed-context quality per token, and ``context()`` latency (issue: the agent).

Quality, in one run with the same embedder and data:
  - LoCoMo (categories 1-4): turn-evidence recall of the packed context at budgets
    256/512/1024/2048, beside plain top-k hybrid retrieval cut to the same budget
    (hits rendered one per line, in rank order, the last one truncated to fit).
    "retrieved" counts an evidence turn when a packed retrieved item is that turn;
    "any" also counts a persona fact or summary that cites it (a citation, so a
    looser measure). Both after ``refresh()`` (summaries, persona facts, memory,
    no LLM) and with retrieval only.
  - PrefEval (explicit, choice, persona): the preference message(s) hidden among
    the 316 filler turns; "present" when a packed item is one of them or cites
    one, or the preference text itself is in the prompt; at 256 and 512 tokens.
  - Splits: LoCoMo conv-26/30 and the first five PrefEval topics are where the
    planner's rules and constants were chosen ("tune"); conv-41/42/43 and the
    other five topics are reported apart ("report"). Each split records the
    planner's need per query and, at 512 tokens, the share of the budget that
    went to the header and to each section.

Latency: ``context()`` (no LLM) p50/p95 beside ``search()`` at 1k/10k/100k chunks for
one user, query embedding included ("cold") and cached ("warm"). ``--parts pack``
times ``pack()`` alone on the candidates the graph builds for LoCoMo questions
(after ``refresh()``, budget 512): first with a fresh token counter, then again
with its cache warm.

    python -m tests.bench.bench_context --out bench-results/context.json [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import datasets
from .common import CachingEmbedder, Timer, locomo_messages, percentiles, write_result

BUDGETS = (256, 512, 1024, 2048)
PREF_BUDGETS = (256, 512)


def _open(path: Path, embedder: Any) -> Any:
    from personalize import Personalizer

    return Personalizer.open(path, embedder=embedder)


def topk_cut(hits: list[Any], budget: int) -> list[Any]:
    """Plain top-k: hit texts one per line in rank order, cut at ``budget`` tokens (last one truncated)."""
    from personalize.tokens import default_token_counter

    counter = default_token_counter()
    kept, used = [], 0
    for hit in hits:
        line = "- " + " ".join(hit.chunk.text.split()) + "\n"
        cost = counter.count(line)
        if used + cost > budget:
            if budget - used > 4:
                kept.append(hit)  # partly in: counted, generously to the baseline
            break
        kept.append(hit)
        used += cost
    return kept


def _ids(ctx: Any, sections: tuple[str, ...]) -> set[str]:
    return {s.external_id for sec in ctx.sections if sec.name in sections for i in sec.items
            for s in i.sources if s.external_id}


_SECTION_LABEL = re.compile(r"^## (Summary|Persona facts|Memory|Retrieved)")
_LABELS = {"Summary": "summary", "Persona facts": "persona", "Memory": "memory", "Retrieved": "retrieved"}


def token_shares(prompt: str) -> dict[str, int]:
    """Tokens of the prompt by part: the header, each section's lines (label, tags, day lines, items)."""
    from personalize.tokens import default_token_counter

    counter = default_token_counter()
    out: dict[str, int] = {}
    part = "header"
    for line in prompt.split("\n"):
        m = _SECTION_LABEL.match(line)
        if m:
            part = _LABELS[m.group(1)]
        out[part] = out.get(part, 0) + counter.count(line + "\n")
    return out


class Tally:
    """Means of named measurements, and the planner's need per query."""

    def __init__(self) -> None:
        self.acc: dict[str, list[float]] = {}
        self.needs: dict[str, int] = {}
        self.shares: dict[str, dict[str, list[float]]] = {}

    def add(self, key: str, value: float) -> None:
        self.acc.setdefault(key, []).append(value)

    def context(self, ctx: Any, budget: int, share_budget: int = 512) -> None:
        need = str(ctx.info.get("need"))
        if budget == share_budget:
            self.needs[need] = self.needs.get(need, 0) + 1
            parts = token_shares(ctx.to_prompt())
            by_need = self.shares.setdefault(need, {})
            for name in ("header", "summary", "persona", "memory", "retrieved", "unused"):
                used = parts.get(name, 0) if name != "unused" else budget - ctx.tokens
                by_need.setdefault(name, []).append(used / budget)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: round(float(np.mean(v)), 4) for k, v in self.acc.items()}
        out["need"] = dict(self.needs)
        out["token_share_at_512"] = {need: {k: round(float(np.mean(v)), 3) for k, v in parts.items()}
                                     for need, parts in self.shares.items()}
        return out


def locomo_quality(embedder: Any, quick: bool, refresh: bool, split: str = "report") -> dict[str, Any]:
    """Turn-evidence recall of the packed context and of plain top-k, on one split's conversations."""
    names = datasets.LOCOMO_SPLITS[split]
    convs = [c for c in datasets.load_locomo() if c.sample_id in names]
    if quick:
        convs = convs[:1]
    tally = Tally()
    skipped = 0
    questions = 0
    with tempfile.TemporaryDirectory() as tmp:
        p = _open(Path(tmp) / "d", embedder)
        for conv in convs:
            user = conv.sample_id
            p.add_messages(user, locomo_messages(conv), progress=False)
            if refresh:
                p.refresh(user)
            for qa in conv.qa:
                if qa.category not in (1, 2, 3, 4) or not qa.evidence:
                    continue
                questions += 1
                gold = set(qa.evidence)
                hits = p.search(user, qa.question, k=96)
                for budget in BUDGETS:
                    got = {h.external_id for h in topk_cut(hits, budget)}
                    tally.add(f"topk@{budget}", len(gold & got) / len(gold))
                    ctx = p.context(user, qa.question, budget_tokens=budget)
                    if not ctx.needs_personalization:
                        skipped += budget == BUDGETS[0]
                        ctx = p.context(user, qa.question, budget_tokens=budget, force=True)
                    tally.add(f"packed@{budget}", len(gold & _ids(ctx, ("retrieved",))) / len(gold))
                    tally.add(f"packed_any@{budget}", len(gold & _ids(ctx, ("retrieved", "persona", "summary"))) / len(gold))
                    tally.add(f"packed_tokens@{budget}", ctx.tokens)
                    tally.context(ctx, budget)
        p.close()
    out = tally.result()
    out["conversations"] = list(names)
    out["questions"] = questions
    out["judged_generic_then_forced"] = skipped
    return out


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def prefeval_quality(
    embedder: Any, form: str, n_items: int, refresh: bool, split: str = "report", seed: int = 1
) -> dict[str, Any]:
    """Whether the preference is present in the packed context and in plain top-k, on one split's topics."""
    filler = datasets.load_prefeval_filler()
    topics = datasets.prefeval_split(split)
    items = datasets.load_prefeval(form, topics=topics)  # type: ignore[arg-type]
    rng = random.Random(seed)
    items = rng.sample(items, min(n_items, len(items))) if n_items < len(items) else items
    tally = Tally()
    generic = 0
    with tempfile.TemporaryDirectory() as tmp:
        p = _open(Path(tmp) / "d", embedder)
        for n, item in enumerate(items):
            user = f"pref{n}"
            pref = list(item.preference_messages)
            pos = rng.randint(0, len(filler))
            texts = filler[:pos] + pref + filler[pos:]
            gold = {str(i) for i in range(pos, pos + len(pref))}
            p.add_messages(user, [{"role": "user", "content": t, "id": str(i)} for i, t in enumerate(texts)],
                           session="s", progress=False)
            if refresh:
                p.refresh(user)
            for budget in PREF_BUDGETS:
                ctx = p.context(user, item.question, budget_tokens=budget)
                generic += (not ctx.needs_personalization) and budget == PREF_BUDGETS[0]
                cited = _ids(ctx, ("retrieved", "persona", "summary"))
                prompt = _norm(ctx.to_prompt())
                present = bool(gold & cited) or (bool(item.preference) and _norm(item.preference) in prompt)
                tally.add(f"present@{budget}", float(present))
                got = {h.external_id for h in topk_cut(p.search(user, item.question, k=32), budget)}
                tally.add(f"topk_present@{budget}", float(bool(gold & got)))
                tally.context(ctx, budget)
            p.forget(user)
        p.close()
    out = tally.result()
    out["topics"] = topics
    out["items"] = len(items)
    out["judged_generic"] = generic
    return out


def bulk_load(p: Any, user: str, corpus: list[str], vectors: np.ndarray, size: int) -> None:
    """Write the first ``size`` corpus texts as ``user``'s chat turns, with their precomputed vectors."""
    from personalize.store import NewDocument
    from personalize.types import LoadedItem

    for start in range(0, size, 5000):
        docs = [NewDocument(LoadedItem(text=t, kind="message", session="s", role="user"), f"h{start + i}",
                            [t], vectors[start + i : start + i + 1])
                for i, t in enumerate(corpus[start : min(size, start + 5000)])]
        p.store.add_documents(user, docs)


def latency(embedder: Any, sizes: list[int], queries: list[str], refresh: bool) -> dict[str, Any]:
    from .bench_ann import corpus_vectors

    # The dev corpus and its vectors, cached across benchmarks (100k texts take
    # ~10 minutes to embed on 2 cores); queries are still embedded for real.
    corpus, vectors = corpus_vectors(max(sizes), embedder)
    results: dict[str, Any] = {}
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            p = _open(Path(tmp) / "d", embedder)
            bulk_load(p, "u", corpus, vectors, size)
            row: dict[str, Any] = {}
            with Timer() as t_refresh:
                if refresh:
                    p.refresh("u")
            row["refresh_s"] = round(t_refresh.ms / 1000, 2) if refresh else None
            row["facts"] = len(p.persona("u")) if refresh else 0
            p.context("u", "warm up the planner and indexes", budget_tokens=512)  # not timed
            for mode in ("cold", "warm"):
                s_search, s_context = [], []
                for q in queries:
                    if mode == "warm":
                        p.queries.embed_one(q)
                    else:
                        p.queries._items.clear()
                    with Timer() as t:
                        p.search("u", q, k=10)
                    s_search.append(t.ms)
                    if mode == "cold":
                        p.queries._items.clear()
                    with Timer() as t:
                        p.context("u", q, budget_tokens=512)
                    s_context.append(t.ms)
                row[f"search_{mode}"] = percentiles(s_search)
                row[f"context_{mode}"] = percentiles(s_context)
            p.close()
        results[str(size)] = row
        print(size, row)
    return results


def pack_latency(embedder: Any, quick: bool, budget: int = 512) -> dict[str, Any]:
    """``pack()`` alone, on the candidates the graph hands it for LoCoMo questions."""
    import personalize.agent.nodes as nodes
    from personalize.agent.packing import pack
    from personalize.tokens import TiktokenCounter

    convs = datasets.load_locomo()[: 1 if quick else 2]
    calls: list[tuple[list[Any], dict[str, Any]]] = []
    real = nodes.pack

    def spy(cands: Any, **kw: Any) -> Any:
        calls.append((list(cands), {k: v for k, v in kw.items() if k != "counter"}))
        return real(cands, **kw)

    with tempfile.TemporaryDirectory() as tmp:
        p = _open(Path(tmp) / "d", embedder)
        for conv in convs:
            p.add_messages(conv.sample_id, locomo_messages(conv), progress=False)
            p.refresh(conv.sample_id)
        nodes.pack = spy
        try:
            for conv in convs:
                for qa in conv.qa[:: 2]:
                    p.context(conv.sample_id, qa.question, budget_tokens=budget, force=True)
        finally:
            nodes.pack = real
        p.close()
    warm = TiktokenCounter()
    out: dict[str, Any] = {"calls": len(calls), "budget": budget,
                           "candidates_per_call": round(float(np.mean([len(c) for c, _ in calls])), 1)}
    # "fresh": every call with a counter that has counted nothing yet (as a first
    # query); "warm": one counter shared by all calls, after a pass has filled it.
    for label in ("fresh_counter", "warm_counter"):
        times = []
        for cands, kw in calls:
            counter = TiktokenCounter() if label == "fresh_counter" else warm
            with Timer() as t:
                pack(cands, counter=counter, **kw)
            times.append(t.ms)
            if label == "fresh_counter":
                pack(cands, counter=warm, **kw)  # fills the shared counter, untimed
        out[label] = percentiles(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results/context.json")
    parser.add_argument("--quick", action="store_true", help="subsets, for a smoke run")
    parser.add_argument("--parts", default="locomo,prefeval,latency,pack")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--prefeval-items", type=int, default=100,
                        help="items sampled per implicit PrefEval form and split (explicit: every item)")
    parser.add_argument("--splits", default="tune,report",
                        help="LoCoMo conversations / PrefEval topics: tune (rules chosen on it), report, or both")
    args = parser.parse_args()
    if datasets.datasets_root() is None:
        raise SystemExit("../shared/datasets is absent: nothing to benchmark")
    from personalize.embeddings import default_embedder

    base = default_embedder()
    embedder = CachingEmbedder(base)
    parts = set(args.parts.split(","))
    result: dict[str, Any] = {"embedder": base.name, "omp_threads": os.environ.get("OMP_NUM_THREADS"),
                              "command": "python -m tests.bench.bench_context " + " ".join(os.sys.argv[1:])}
    splits = args.splits.split(",")
    if "locomo" in parts:
        result["locomo"] = {}
        for split in splits:
            result["locomo"][split] = {"with_refresh": locomo_quality(embedder, args.quick, True, split)}
            if not args.quick:
                result["locomo"][split]["retrieval_only"] = locomo_quality(embedder, args.quick, False, split)
            print("locomo", split, result["locomo"][split], flush=True)
    if "prefeval" in parts:
        n = 20 if args.quick else args.prefeval_items
        result["prefeval"] = {}
        for split in splits:
            result["prefeval"][split] = {}
            for form in ("explicit", "choice", "persona"):
                # The explicit form over every item of the split; the implicit forms, a sample.
                items = n if form != "explicit" or args.quick else 10**6
                result["prefeval"][split][form] = {"with_refresh": prefeval_quality(embedder, form, items, True, split)}
                print("prefeval", split, form, result["prefeval"][split][form], flush=True)
    if "latency" in parts:
        queries = [qa.question for conv in datasets.load_locomo() for qa in conv.qa][:: 7][: 40 if args.quick else 200]
        sizes = [int(s) for s in args.sizes.split(",")]
        # The bare embedder: a "cold" query must really be embedded.
        result["latency"] = latency(base, sizes, queries, refresh=True)
    if "pack" in parts:
        result["pack"] = pack_latency(embedder, args.quick)
        print("pack", result["pack"])
    write_result(args.out, result)


if __name__ == "__main__":
    main()
