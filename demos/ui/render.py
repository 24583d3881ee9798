"""Rendering of personal knowledge: persona facts, summaries, memory and packed context.

User data is shown through Markdown, so every piece of it is escaped first: a
document must not be able to format the page, and above all must not make the
browser fetch anything (a Markdown image would). Provenance is shown with one
colour per source file, the same colour everywhere on the page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import PurePath
from typing import Any

import streamlit as st

from personalize.types import Chunk, Fact, Memory, Summary

__all__ = [
    "Palette",
    "best_sentence",
    "generator_badge",
    "highlight_sentence",
    "md_block",
    "md_escape",
    "render_context",
    "render_fact",
    "render_memory",
    "render_summary",
    "safe_markdown",
    "source_name",
]

# Every ASCII punctuation mark CommonMark lets us escape, plus ':' (Streamlit's
# :colour[...] and :emoji: directives) and '$' (LaTeX).
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&])")
# What safe_markdown keeps as Markdown (headings, lists, emphasis) and what it
# neutralizes (links, images, HTML, directives, maths, tables).
_MD_UNSAFE = re.compile(r"([\\\[\]()<>!|~:$&`])")
_WORD = re.compile(r"[A-Za-z0-9À-ÿ']+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Orange is kept for the EXTRACTIVE mark, so no source ever looks like one.
_COLORS = ("blue", "green", "violet", "yellow", "gray", "red")
_SECTION_TITLES = {
    "summary": "Task summary",
    "persona": "Persona facts",
    "memory": "Memory",
    "retrieved": "Retrieved from the user's data",
}
# Words too common to be worth highlighting (or matching a fact to its sentence).
_STOP = frozenset(
    "the and for with that this have has had was are were you your yours i'm i've not but from what which "
    "who whom how why when where should would could can will shall may might must does did done any some "
    "all about into onto over under than then there their they them our ours its it's just also very me my "
    "mine tell give suggest recommend please".split()
)
_HEADING = re.compile(r"^#{1,6}\s+", re.MULTILINE)


# ------------------------------------------------------------------ escaping
def md_escape(text: str) -> str:
    """``text`` as literal Markdown on one line (no formatting, links or directives)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def md_block(text: str) -> str:
    """Multi-line ``text`` as literal Markdown, line breaks kept."""
    return "  \n".join(md_escape(line) if line.strip() else "" for line in str(text).splitlines())


def safe_markdown(text: str) -> str:
    """Model- or data-written Markdown with headings, lists and emphasis kept, everything
    that could link, embed, fetch or inject (links, images, HTML, directives) escaped.

    Headings are demoted to the smallest size: they sit inside a page section.
    """
    return _HEADING.sub("##### ", _MD_UNSAFE.sub(r"\\\1", str(text)))


def source_name(source: str | None) -> str:
    """The name shown for a source: a file's name, or the label (``pasted chat``)."""
    if not source:
        return "unknown source"
    if source.startswith("<"):
        return source.strip("<>")
    return PurePath(source).name or source


def _date(value: datetime | None) -> str:
    return value.date().isoformat() if value else "unknown date"


class Palette:
    """Assigns each source name a colour, in order of first use (stable within a page)."""

    def __init__(self) -> None:
        self._colors: dict[str, str] = {}

    def color(self, name: str) -> str:
        if name not in self._colors:
            self._colors[name] = _COLORS[len(self._colors) % len(_COLORS)]
        return self._colors[name]

    def badge(self, name: str, suffix: str = "") -> str:
        return f":{self.color(name)}-badge[{md_escape(name + suffix)}]"

    def legend(self) -> str:
        return " ".join(f":{c}-badge[{md_escape(n)}]" for n, c in self._colors.items())


# ------------------------------------------------------------------ provenance
def _stems(text: str) -> set[str]:
    # A five-letter prefix is a cheap stemmer: "vegetarian"/"vegetarians", "hiking"/"hike".
    return {w.lower()[:5] for w in _WORD.findall(text) if len(w) > 2 and w.lower() not in _STOP}


def best_sentence(chunk_text: str, fact_text: str) -> str:
    """The sentence of ``chunk_text`` that a fact was most likely extracted from."""
    sentences = [s.strip() for s in _SENTENCE_END.split(chunk_text) if s and s.strip()]
    if not sentences:
        return chunk_text.strip()
    wanted = _stems(fact_text)
    return max(sentences, key=lambda s: (len(wanted & _stems(s)), -abs(len(s) - 120)))


def highlight_sentence(chunk_text: str, sentence: str, color: str = "orange", *, window: int = 220) -> str:
    """Markdown of ``chunk_text`` around ``sentence``, which is highlighted.

    Long chunks are cut to ``window`` characters on each side of the sentence.
    """
    text = " ".join(chunk_text.split())
    target = " ".join(sentence.split())
    at = text.find(target)
    if not target or at < 0:
        return md_escape(text[: 2 * window])
    before, after = text[:at], text[at + len(target):]
    if len(before) > window:
        before = "…" + before[-window:]
    if len(after) > window:
        after = after[:window] + "…"
    return f"{md_escape(before)} :{color}-background[{md_escape(target)}] {md_escape(after)}".strip()


def _highlight_terms(escaped: str, terms: Iterable[str]) -> str:
    """Bold the query's words inside already escaped Markdown."""
    stems = {t.lower()[:5] for t in terms if len(t) > 2 and t.lower() not in _STOP}
    if not stems:
        return escaped
    return re.sub(
        r"(?<![\\\w])([A-Za-zÀ-ÿ]{3,})",
        lambda m: f"**{m.group(1)}**" if m.group(1).lower()[:5] in stems else m.group(1),
        escaped,
    )


# ------------------------------------------------------------------ persona
def render_fact(fact: Fact, chunks: Mapping[int, Chunk], palette: Palette,
                replaced_by: Fact | None = None) -> None:
    """One persona fact with the sentence it came from, highlighted in its source."""
    generator = "rule-based" if fact.generator == "rules" else fact.generator
    head = f"**{md_escape(fact.text)}**" if fact.current else f"~~{md_escape(fact.text)}~~"
    meta = [f"*{md_escape(fact.category)}*", f":gray-badge[{md_escape(generator)}]",
            f"confidence {fact.confidence:.2f}"]
    if fact.current:
        meta.append(f"since {_date(fact.valid_from)}")
    else:
        meta.append(f"until {_date(fact.valid_to)}")
    line = head + " " + " · ".join(meta)
    if not fact.current and replaced_by is not None:
        line += f" → now: *{md_escape(replaced_by.text)}*"
    lines = [line]
    for chunk_id in fact.sources[:3]:
        chunk = chunks.get(chunk_id)
        if chunk is None:
            lines.append(f"> source chunk \\#{chunk_id} no longer exists")
            continue
        name = source_name(chunk.source)
        quote = highlight_sentence(chunk.text, best_sentence(chunk.text, fact.text), palette.color(name))
        when = f" · {_date(chunk.timestamp)}" if chunk.timestamp else ""
        lines.append(f"> {quote}  \n> {palette.badge(name, f' #{chunk_id}')}{when}")
    if len(fact.sources) > 3:
        lines.append(f"*also said in {len(fact.sources) - 3} more source chunk(s)*")
    st.markdown("\n\n".join(lines))


# ------------------------------------------------------------------ summaries
def generator_badge(generator: str) -> str:
    """A badge naming who wrote something; extractive output is flagged in orange."""
    if generator == "extractive":
        return ":orange-badge[EXTRACTIVE · no LLM]"
    if generator == "rules":
        return ":gray-badge[rule-based]"
    return f":green-badge[LLM · {md_escape(generator)}]"


def render_summary(summary: Summary, chunks: Mapping[int, Chunk], palette: Palette, *,
                   description: str = "", stale: bool = False) -> None:
    """One task summary in an expander: generator, staleness, text and its sources."""
    kind = "EXTRACTIVE (no LLM)" if summary.extractive else f"LLM: {summary.generator}"
    label = f"{summary.task} · {kind} · {len(summary.sources)} sources" + (" · stale" if stale else "")
    with st.expander(label, expanded=False):
        badges = [generator_badge(summary.generator), f"built {summary.created_at:%Y-%m-%d %H:%M} UTC"]
        if stale:
            badges.append(":red-badge[stale: newer data arrived, refresh to rebuild]")
        st.markdown(" · ".join(badges))
        if description:
            st.caption(f"Task: {description}")
        if summary.extractive:
            st.caption("Extractive: statistics and representative items picked from the user's data "
                       "without a language model; not a written summary.")
        st.markdown(md_block(summary.text))
        names = [palette.badge(source_name(chunks[c].source), f" #{c}") if c in chunks else f"\\#{c}"
                 for c in summary.sources]
        st.markdown("**Sources:** " + (" ".join(names) if names else "none"))


def render_memory(memory: Memory | None, history_len: int = 0) -> None:
    """The agentic memory document, with its generator and version."""
    if memory is None:
        st.info("No memory yet: run **Refresh** to build it.")
        return
    st.markdown(f"{generator_badge(memory.generator)} · version {memory.version}"
                + (f" of {history_len}" if history_len else "")
                + f" · built {memory.created_at:%Y-%m-%d %H:%M} UTC")
    with st.container(border=True):
        st.markdown(safe_markdown(memory.text))


# ------------------------------------------------------------------ context
def _item_sources(item: Any, palette: Palette) -> str:
    names: dict[str, list[int]] = {}
    for src in item.sources:
        names.setdefault(source_name(src.source), []).append(src.chunk_id)
    if not names:
        return ""
    parts = []
    for name, ids in names.items():
        ids_text = " #" + ", #".join(str(i) for i in ids[:4]) + (f" +{len(ids) - 4}" if len(ids) > 4 else "")
        parts.append(palette.badge(name, ids_text))
    return " ".join(parts)


def _item_line(item: Any, query_terms: Sequence[str], palette: Palette) -> str:
    meta = item.metadata or {}
    text = _highlight_terms(md_escape(item.text), query_terms)
    first = item.sources[0] if item.sources else None
    if first is not None and item.kind in ("document", "message", "fact"):
        # Provenance highlighting: the item's background is its source file's colour.
        text = f":{palette.color(source_name(first.source))}-background[{text}]"
    prefix = []
    if item.kind == "message":
        ts = str(meta.get("timestamp") or "")[:10]
        who = meta.get("speaker") or meta.get("role")
        prefix.append(" ".join(x for x in (ts, md_escape(str(who)) + ":" if who else "") if x))
    if item.kind == "fact" and meta.get("category"):
        prefix.append(f"({md_escape(str(meta['category']))})")
    if meta.get("generator"):
        prefix.append(generator_badge(str(meta["generator"])))
    tail = [f"score {item.score:.2f}", f"{item.tokens} tokens"]
    if meta.get("truncated"):
        tail.append(":gray-badge[truncated to fit]")
    sources = _item_sources(item, palette)
    return (" ".join(p for p in prefix if p) + " " + text).strip() + "  \n" + " · ".join(tail) + (
        f" · {sources}" if sources else "")


def render_context(ctx: Any, palette: Palette) -> None:
    """The packed context, section by section, with token counts and provenance."""
    info = dict(ctx.info or {})
    cols = st.columns(4)
    cols[0].metric("Tokens used", f"{ctx.tokens} / {ctx.budget_tokens}")
    cols[1].metric("Task", ctx.task or "none")
    cols[2].metric("Items packed", len(ctx.items))
    cols[3].metric("Sections", len([s for s in ctx.sections if s.items]))
    if info.get("task_source"):
        st.caption(f"Task chosen by: {info['task_source']} · candidates seen: "
                   + ", ".join(f"{k} {v}" for k, v in dict(info.get("candidates") or {}).items()))
    if ctx.is_empty:
        if not ctx.needs_personalization:
            st.info("The planner judged this query generic: nothing personal was packed.")
        else:
            st.info("Nothing personal fits this query (no data, or a budget too small).")
        return
    terms = [w for w in _WORD.findall(ctx.query)]
    for section in ctx.sections:
        if not section.items:
            continue
        tokens = sum(i.tokens for i in section.items)
        title = _SECTION_TITLES.get(section.name, section.name)
        st.subheader(f"{title} · {tokens} tokens · {len(section.items)} item(s)")
        st.markdown("\n\n".join(f"- {_item_line(i, terms, palette)}" for i in section.items))
    legend = palette.legend()
    if legend:
        st.caption("Colours mark where each item came from: " + legend)
    with st.expander("The prompt text, exactly as counted"):
        st.code(ctx.to_prompt() or "(empty)", language=None)
