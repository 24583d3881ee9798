"""Where ``context()`` time goes: the agent's nodes alone, in a sequential graph, in the shipped graph.

One user of ``--size`` dev-corpus chat turns (vectors precomputed), after ``refresh()``,
LoCoMo questions, budget 512, no LLM, query embeddings cached ("warm": the embedding is
timed by ``bench_embed`` and ``bench_context``). Side by side in one run:

- ``nodes``: plan, retrieve, load_summary, match_persona and pack called one after the
  other as plain functions (what the work itself costs);
- ``sequential graph``: the same five nodes as a chain in a compiled LangGraph graph;
- ``shipped graph``: the graph ``Personalizer.context`` runs, which fans the three fetch
  nodes out in one superstep (as the agent issue asks) and joins them at pack, once invoked
  plainly (LangGraph starts three threads per run) and once through ``context()`` (its
  long-lived threads, ``personalize/agent/_executor.py``);
- LangGraph's own floor: the same two shapes with five no-op nodes;
- ``context()`` with 4 retrieval candidates per hit (the default before 2) and with the default.

Every variant is timed once per round, in turn, so slow drift of the machine
hits them all alike.

    python -m tests.bench.bench_graph --out bench-results/graph.json [--size 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypedDict

from . import datasets
from .bench_context import bulk_load
from .common import percentiles, time_per_query, write_result

_FETCH = ("retrieve", "load_summary", "match_persona")
_NODES = ("plan", *_FETCH, "pack")


def _interleaved(variants: dict[str, Callable[[str], Any]], queries: list[str], rounds: int) -> dict[str, Any]:
    """p50/p95 of each variant, timed in turn within every round so that drift hits them all alike."""
    samples: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(rounds):
        for label, fn in variants.items():
            samples[label] += time_per_query(fn, queries)
    return {label: percentiles(times) for label, times in samples.items()}


class _Noop(TypedDict, total=False):
    query: str
    plan: int
    retrieve: int
    load_summary: int
    match_persona: int
    pack: int


def _noop_graph(fan_out: bool) -> Any:
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(_Noop)
    for name in _NODES:
        builder.add_node(name, lambda state, _n=name: {_n: 1})
    builder.add_edge(START, "plan")
    if fan_out:
        for name in _FETCH:
            builder.add_edge("plan", name)
        builder.add_edge(list(_FETCH), "pack")
    else:
        for a, b in zip(_NODES, _NODES[1:]):
            builder.add_edge(a, b)
    builder.add_edge("pack", END)
    return builder.compile()


def _sequential_graph(nodes: Any) -> Any:
    from langgraph.graph import END, START, StateGraph

    from personalize.agent.state import PersonalizationInput, PersonalizationState, RunContext

    builder = StateGraph(PersonalizationState, context_schema=RunContext, input_schema=PersonalizationInput)
    for name in _NODES:
        builder.add_node(name, getattr(nodes, name))
    builder.add_edge(START, "plan")
    for a, b in zip(_NODES, _NODES[1:]):
        builder.add_edge(a, b)
    builder.add_edge("pack", END)
    return builder.compile()


def measure(size: int, rounds: int, n_queries: int) -> dict[str, Any]:
    from personalize import Personalizer
    from personalize.agent.nodes import Nodes
    from personalize.agent.planner import Planner
    from personalize.agent.state import GraphOptions, RunContext
    from personalize.embeddings import default_embedder
    from personalize.tokens import default_token_counter

    from .bench_ann import corpus_vectors

    embedder = default_embedder()
    corpus, vectors = corpus_vectors(size, embedder)
    queries = [qa.question for conv in datasets.load_locomo() for qa in conv.qa][::7][:n_queries]
    run = RunContext(user_id="u", budget_tokens=512)
    with tempfile.TemporaryDirectory() as tmp:
        p = Personalizer.open(Path(tmp) / "d", embedder=embedder)
        bulk_load(p, "u", corpus, vectors, size)
        p.refresh("u")
        for q in queries:  # warm: every query embedded once, outside the timings
            p.queries.embed_one(q)
        options = GraphOptions()
        planner = Planner(p.queries.embed_one, p.embedder.embed, task_threshold=options.task_threshold,
                          default_task=options.default_task)
        nodes = Nodes(p, planner, None, default_token_counter(), options)

        class _Runtime:  # what a node reads of LangGraph's Runtime
            context = run

        def direct(q: str) -> None:
            state: dict[str, Any] = {"query": q}
            for name in _NODES:
                state.update(getattr(nodes, name)(state, _Runtime))

        sequential = _sequential_graph(nodes)
        shipped = p.context_graph()
        candidates: dict[str, Callable[[str], Any]] = {
            "nodes": direct,
            "sequential graph": lambda q: sequential.invoke({"query": q}, context=run),
            "shipped graph, LangGraph's per-run threads": lambda q: shipped.invoke({"query": q}, context=run),
            "shipped graph (context())": lambda q: p.context("u", q, budget_tokens=512),
        }
        out: dict[str, Any] = {"size": size, "queries": len(queries), "rounds": rounds,
                               "load_1min": round(os.getloadavg()[0], 2)}
        for fn in candidates.values():  # warm-up round: caches, lazy imports
            for q in queries[:20]:
                fn(q)
        # Retrieval's candidate pool, side by side: 4 per hit was the default before 2.
        default = p.retriever.config
        for per_hit in (4, default.candidates_per_hit):
            config = replace(default, candidates_per_hit=per_hit)

            def with_pool(q: str, _config: Any = config) -> Any:
                p.retriever.config = _config
                try:
                    return p.context("u", q, budget_tokens=512)
                finally:
                    p.retriever.config = default

            candidates[f"context(), {per_hit} retrieval candidates per hit"] = with_pool
        for label, fan_out in (("langgraph floor, 5 no-op nodes in a chain", False),
                               ("langgraph floor, 5 no-op nodes, fan-out", True)):
            graph = _noop_graph(fan_out)
            candidates[label] = lambda q, _g=graph: _g.invoke({"query": q})
        out.update(_interleaved(candidates, queries, rounds))
        for label in candidates:
            print(label, out[label], flush=True)
        p.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results/graph.json")
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=150)
    args = parser.parse_args()
    if datasets.datasets_root() is None:
        raise SystemExit("../shared/datasets is absent: nothing to benchmark")
    result = measure(args.size, args.rounds, args.queries)
    result["command"] = "python -m tests.bench.bench_graph " + " ".join(os.sys.argv[1:])
    write_result(args.out, result)


if __name__ == "__main__":
    main()
