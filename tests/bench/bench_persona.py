"""Persona extraction, preference capture and refresh cost (issue 3: summaries and persona).

1. Persona extraction with the rule-based extractor (no LLM) on MSC (persona-summary,
   per-utterance gold facts) and Synthetic-Persona-Chat (each user's persona sentences):
   precision and recall of gold persona sentences, by embedding match (MiniLM cosine at
   ``--threshold``, default 0.7; 0.6 and 0.8 reported too), per speaker, micro-averaged;
   beside the trivial baseline that returns every first-person sentence. ``rules`` matches
   the facts' stored third-person text ("Has two dogs"); ``rules_quote`` matches the user's
   words each fact was read from (the clause), which is the like-for-like comparison with
   the baseline's raw sentences (MiniLM scores "Has two dogs" vs "I have two dogs." ~0.83).
2. PrefEval (explicit, implicit choice-based, implicit persona-driven): the preference
   message(s) followed by filler user turns are ingested as one user's chat; after
   ``refresh()`` (no LLM): the fraction of preferences captured as a current persona
   fact, and the fraction present in the ``chat`` summary (a summary line matching the
   gold preference at the threshold).
3. Refresh cost: seconds per user per step and per task for the extractive path
   (measured), and LLM calls per user per task for the LLM path (counted against the
   scripted OpenAI-compatible server in echo mode, whose latency is not a model's).

    python -m tests.bench.bench_persona --out bench-results/persona.json [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import datasets
from .common import CachingEmbedder, write_result

THRESHOLDS = (0.6, 0.7, 0.8)


def _split(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.strip()) > 3]


def _match(embedder: Any, preds: list[str], golds: list[str]) -> np.ndarray:
    """Cosine matrix ``(len(preds), len(golds))``."""
    if not preds or not golds:
        return np.zeros((len(preds), len(golds)), np.float32)
    return embedder.embed(preds) @ embedder.embed(golds).T


def _prf(pairs: list[tuple[np.ndarray, int, int]], threshold: float) -> dict[str, float]:
    tp_pred = tp_gold = n_pred = n_gold = 0
    for sims, n_p, n_g in pairs:
        n_pred += n_p
        n_gold += n_g
        if n_p and n_g:
            tp_pred += int((sims.max(axis=1) >= threshold).sum())
            tp_gold += int((sims.max(axis=0) >= threshold).sum())
    precision = tp_pred / n_pred if n_pred else 0.0
    recall = tp_gold / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "predicted": n_pred, "gold": n_gold}


def _speakers_msc(limit: int) -> list[tuple[list[str], list[str]]]:
    out = []
    for episode in datasets.load_msc_personasummary(1)[:limit]:
        for speaker in sorted({t.speaker for t in episode.turns}):
            turns = [t for t in episode.turns if t.speaker == speaker]
            golds = [s for t in turns if t.gold_persona for s in _split(t.gold_persona)]
            if golds:
                out.append(([t.text for t in turns], golds))
    return out


def _speakers_spc(limit: int) -> list[tuple[list[str], list[str]]]:
    out = []
    for conv in datasets.load_spc()[:limit]:
        for speaker, personas in (("User 1", conv.user1_personas), ("User 2", conv.user2_personas)):
            texts = [t.text for t in conv.turns if t.speaker == speaker]
            if texts and personas:
                out.append((texts, list(personas)))
    return out


def extraction(embedder: Any, speakers: list[tuple[list[str], list[str]]]) -> dict[str, Any]:
    """Rule extractor vs. every-first-person-sentence baseline on (utterances, gold) pairs."""
    from personalize.persona import extract_statements, first_person_sentences

    systems: dict[str, list[tuple[np.ndarray, int, int]]] = {
        "rules": [], "rules_quote": [], "first_person_baseline": []}
    for texts, golds in speakers:
        found = [st for text in texts for st in extract_statements(text)]
        baseline = [s for text in texts for s in first_person_sentences(text)]
        for name, preds in (("rules", [st.text for st in found]), ("rules_quote", [st.quote for st in found]),
                            ("first_person_baseline", baseline)):
            systems[name].append((_match(embedder, preds, golds), len(preds), len(golds)))
    return {name: {f"@{t}": _prf(pairs, t) for t in THRESHOLDS} for name, pairs in systems.items()} | {
        "speakers": len(speakers)}


def prefeval(embedder: Any, per_form: int, filler_turns: int) -> dict[str, Any]:
    """Preference captured as a current fact / present in the chat summary, per form."""
    from personalize import Personalizer

    filler = datasets.load_prefeval_filler()[:filler_turns]
    out: dict[str, Any] = {"filler_user_turns": len(filler)}
    with tempfile.TemporaryDirectory() as tmp:
        p = Personalizer.open(tmp, embedder=embedder)
        for form in ("explicit", "choice", "persona"):
            items = datasets.load_prefeval(form)
            step = max(1, len(items) // per_form)
            items = items[::step][:per_form]
            fact_sims, summary_sims = [], []
            for n, item in enumerate(items):
                user = f"{form}-{n}"
                turns = [{"role": "user", "content": m} for m in (*item.preference_messages, *filler)]
                p.add_messages(user, turns, session="s", progress=False)
                p.refresh(user, tasks=["chat"], steps=("persona", "summaries"))
                gold = embedder.embed([item.preference])[0]
                facts = [f.text for f in p.persona(user)]
                lines = [l.lstrip("- ").strip() for l in p.summary(user, "chat").text.splitlines()[2:] if l.strip()]
                fact_sims.append(float((embedder.embed(facts) @ gold).max()) if facts else 0.0)
                summary_sims.append(float((embedder.embed(lines) @ gold).max()) if lines else 0.0)
                p.forget(user)
            out[form] = {
                "items": len(items),
                **{f"fact@{t}": round(float(np.mean(np.array(fact_sims) >= t)), 4) for t in THRESHOLDS},
                **{f"summary@{t}": round(float(np.mean(np.array(summary_sims) >= t)), 4) for t in THRESHOLDS},
            }
        p.close()
    return out


def refresh_cost(embedder: Any, users: int) -> dict[str, Any]:
    """Extractive refresh measured per step; LLM calls counted against the scripted server."""
    from personalize import Personalizer
    from personalize.llm import OpenAIChat
    from personalize.testing import ScriptedOpenAIServer
    from personalize.testing.scripted_server import echo_responder

    convs = datasets.load_spc()[:users]
    result: dict[str, Any] = {"users": len(convs)}
    with tempfile.TemporaryDirectory() as tmp:
        p = Personalizer.open(Path(tmp) / "x", embedder=embedder)
        tasks = p.tasks.names()
        for i, conv in enumerate(convs):
            p.add_messages(f"u{i}", [{"role": "user" if t.speaker == "User 1" else "assistant", "content": t.text}
                                     for t in conv.turns], session="s", progress=False)
        chunks = sum(len(p.store.chunk_ids(f"u{i}")) for i in range(len(convs)))
        timings = {}
        for step in ("persona", "summaries", "memory"):
            start = time.perf_counter()
            for i in range(len(convs)):
                p.refresh(f"u{i}", steps=(step,))
            timings[step] = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(len(convs)):
            p.refresh(f"u{i}")
        noop = time.perf_counter() - start
        p.close()
        result["extractive"] = {
            "chunks_per_user": round(chunks / len(convs), 1),
            "persona_s_per_user": round(timings["persona"] / len(convs), 4),
            "summary_s_per_user_per_task": round(timings["summaries"] / len(convs) / len(tasks), 4),
            "memory_s_per_user": round(timings["memory"] / len(convs), 4),
            "up_to_date_refresh_s_per_user": round(noop / len(convs), 4),
            "llm_calls": 0,
        }
        with ScriptedOpenAIServer(responder=echo_responder) as server:
            llm = OpenAIChat("scripted-model", base_url=server.base_url)
            p = Personalizer.open(Path(tmp) / "llm", embedder=embedder, llm=llm)
            for i, conv in enumerate(convs):
                p.add_messages(f"u{i}", [{"role": "user" if t.speaker == "User 1" else "assistant",
                                          "content": t.text} for t in conv.turns], session="s", progress=False)
            calls: dict[str, int] = {}
            for step in ("persona", "summaries", "memory"):
                before = len(server.requests)
                for i in range(len(convs)):
                    p.refresh(f"u{i}", steps=(step,))
                calls[step] = len(server.requests) - before
            before = len(server.requests)
            for i in range(len(convs)):
                p.refresh(f"u{i}")
            p.close()
            llm.close()
            result["llm"] = {
                "persona_calls_per_user": round(calls["persona"] / len(convs), 3),
                "summary_calls_per_user_per_task": round(calls["summaries"] / len(convs) / len(tasks), 3),
                "memory_calls_per_user": round(calls["memory"] / len(convs), 3),
                "up_to_date_refresh_calls": len(server.requests) - before,
            }
    result["tasks"] = len(tasks)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results/persona.json")
    parser.add_argument("--quick", action="store_true", help="small subsets (about a minute)")
    parser.add_argument("--threshold", type=float, default=0.7, help="the headline match threshold")
    args = parser.parse_args(argv)
    if datasets.datasets_root() is None:
        print("datasets not found (../shared/datasets); nothing to measure")
        return 0
    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    from personalize.embeddings import default_embedder

    embedder = CachingEmbedder(default_embedder())
    n_msc, n_spc, n_pref, n_users = (30, 60, 20, 8) if args.quick else (150, 300, 60, 30)
    started = time.perf_counter()
    result: dict[str, Any] = {"threshold": args.threshold, "embedder": embedder.name}
    result["msc"] = extraction(embedder, _speakers_msc(n_msc))
    result["spc"] = extraction(embedder, _speakers_spc(n_spc))
    result["prefeval"] = prefeval(embedder, n_pref, filler_turns=40)
    result["refresh_cost"] = refresh_cost(embedder, n_users)
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_result(args.out, result)
    t = f"@{args.threshold}"
    for name in ("msc", "spc"):
        for system in ("rules", "rules_quote", "first_person_baseline"):
            r = result[name][system][t]
            print(f"{name:4} {system:22} P={r['precision']:.3f} R={r['recall']:.3f} F1={r['f1']:.3f} "
                  f"(pred {r['predicted']}, gold {r['gold']})")
    for form in ("explicit", "choice", "persona"):
        r = result["prefeval"][form]
        print(f"prefeval {form:8} fact{t}={r[f'fact{t}']:.2f} summary{t}={r[f'summary{t}']:.2f} (n={r['items']})")
    print("refresh cost:", result["refresh_cost"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
