"""``personalize demo``: the whole pipeline on the bundled sample users, offline."""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["find_sample_dir", "run_demo"]

_QUERIES = {
    "alice": ["what should I cook for dinner?", "which code editor do I use?"],
    "bob": ["suggest a snack for my long run", "write a subject line for an email about moving the quiz"],
    "carol": ["suggest a title for my paper on zebrafish fin regeneration", "recommend a movie for tonight"],
}


def find_sample_dir() -> Path:
    """demos/data of the source checkout (the package is installed from it)."""
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        candidate = base / "demos" / "data"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("demos/data not found: run the demo from the repository root")


def run_demo(data_dir: str | Path, *, sample_dir: str | Path | None = None, out=print) -> int:
    """Ingest, refresh, search and pack context for every sample user; print what happened."""
    from personalize.cli._common import open_personalizer

    samples = Path(sample_dir) if sample_dir else find_sample_dir()
    users = sorted(d.name for d in samples.iterdir() if d.is_dir())
    out(f"personalize demo: {len(users)} sample users from {samples}, data in {data_dir}")

    class _Args:
        pass

    args = _Args()
    args.data_dir = str(data_dir)  # type: ignore[attr-defined]
    with open_personalizer(args) as p:
        llm = getattr(p.llm, "name", None)
        out(f"LLM: {llm or 'none configured (extractive summaries, rule-based persona)'}\n")
        for user in users:
            started = time.perf_counter()
            result = p.add_documents(user, [samples / user], progress=False)
            out(f"[{user}] ingested {result.documents_added} documents / {result.chunks_added} chunks "
                f"({result.duplicates_skipped} already present, {len(result.errors)} errors) "
                f"in {time.perf_counter() - started:.1f}s")
            for err in result.errors:
                out(f"    {err.kind}: {err.source}: {err.error}")
            report = p.refresh(user)
            out(f"[{user}] refresh: {report.facts_added} persona facts added, "
                f"{report.facts_superseded} superseded, {len(report.summaries_rebuilt)} task summaries built, "
                f"memory v{report.memory_version} ({report.seconds:.1f}s"
                + (f", {len(report.failures)} failures" if report.failures else "") + ")")
            for fact in p.persona(user)[:5]:
                out(f"    persona ({fact.category}): {fact.text}")
            superseded = [f for f in p.persona(user, history=True) if not f.current]
            for fact in superseded[:2]:
                out(f"    superseded: {fact.text}")
            for query in _QUERIES.get(user, ["what do I care about?"]):
                ctx = p.context(user, query, budget_tokens=256)
                out(f"[{user}] query: {query}")
                out(f"    packed context: {ctx.tokens}/256 tokens, task={ctx.task}, "
                    + ", ".join(f"{s.name}={len(s.items)}" for s in ctx.sections))
                for item in ctx.items[:3]:
                    text = item.text if len(item.text) < 90 else item.text[:87] + "..."
                    out(f"      [{item.kind}] {text}")
            out("")
        out(f"users in {data_dir}: {', '.join(p.users())}")
    return 0
