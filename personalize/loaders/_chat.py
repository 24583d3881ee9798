"""Chat exports in JSON / JSON Lines → message items.

Accepted shapes (each element of a list, or each line of a ``.jsonl``, may be any of
the mapping shapes):

(a) a list of OpenAI-style messages ``{"role", "content", ...}``;
(b) one conversation ``{"messages": [...], "id"/"session"/"title": ...}``;
(c) a list of such conversations;
(d) the simple form ``{"user", "role", "content", "timestamp"}`` (``user`` → speaker);
(e) ChatGPT's ``conversations.json``: ``[{"title", "mapping": {id: {"message": ...}}}]``.

A turn that cannot be a message (a wrong field type, an unparseable timestamp) is
reported alone as ``"<path>#<where>"`` (``"chat.json#element 3"``) and the other turns
are kept; the file fails only when no turn could be loaded or its shape is unknown.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from personalize.types import LoadedItem

from ._errors import LoaderError
from ._io import FileJob, ItemCollector, decode_text
from ._messages import normalize_message

__all__ = ["ACCEPTED_SHAPES", "load_json_file", "load_jsonl_file"]

ACCEPTED_SHAPES = (
    "a list of messages like {'role': 'user', 'content': '...'} (or {'user', 'content'}); "
    "{'messages': [...]} with an optional 'id'/'session'/'title'; a list of such "
    "conversations; ChatGPT's conversations.json export; or JSON Lines holding any of these"
)


# The time budget is checked once per this many turns.
_CHECK_EVERY = 1024


class _Context:
    def __init__(self, job: FileJob) -> None:
        self.job = job
        self.path = job.path
        self.source = job.source
        self.name = job.name
        self.base_metadata = job.metadata()
        self.collector = ItemCollector(self.source, job.limits)
        self.turns = 0
        self.first_problem: LoaderError | None = None

    def message(
        self,
        raw: Mapping[str, Any],
        *,
        where: str,
        session: str | None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if "content" not in raw and ("tool_calls" in raw or "function_call" in raw):
            return  # an assistant turn that only calls tools: nothing said, nothing to index
        self.turns += 1
        if self.turns % _CHECK_EVERY == 0:
            self.job.check_time()
        base = dict(extra or {})
        base.update(self.base_metadata)
        try:
            item = normalize_message(
                raw,
                where=where,
                source=self.source,
                default_session=session,
                base_metadata=base,
            )
        except LoaderError as exc:
            self.first_problem = self.first_problem or exc
            self.job.item_error(where, str(exc), exc.kind)
            return
        if item is not None:
            self.collector.add(item)

    def unsupported(self, where: str, value: Any) -> LoaderError:
        what = type(value).__name__
        if isinstance(value, Mapping):
            keys = ", ".join(sorted(str(k) for k in value)[:8])
            what = f"an object with keys [{keys}]"
        return LoaderError(
            f"{self.name}: {where} is {what}, not a recognized chat shape. "
            f"Accepted: {ACCEPTED_SHAPES}",
            kind="unsupported",
            source=self.source,
        )


def _label(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text or None


def _conversation_session(conv: Mapping[str, Any], fallback: str) -> str:
    for key in ("session", "id", "conversation_id", "title"):
        label = _label(conv.get(key))
        if label is not None:
            return label
    return fallback


def _title_metadata(conv: Mapping[str, Any]) -> dict[str, Any]:
    title = _label(conv.get("title"))
    return {"title": title} if title is not None else {}


def _conversation(ctx: _Context, conv: Mapping[str, Any], where: str) -> None:
    messages = conv["messages"]
    if not isinstance(messages, list):
        raise LoaderError(
            f"{ctx.name}: {where}: 'messages' must be a list, got {type(messages).__name__}",
            kind="invalid",
            source=ctx.source,
        )
    session = _conversation_session(conv, ctx.path.stem)
    extra = _title_metadata(conv)
    for index, raw in enumerate(messages):
        here = f"{where}, message {index}"
        if not isinstance(raw, Mapping):
            raise ctx.unsupported(here, raw)
        ctx.message(raw, where=here, session=session, extra=extra)


def _chatgpt_text(content: Any) -> str:
    # ChatGPT stores text as string parts; images, code-run outputs and browsing
    # results are dicts or other content types with nothing to index.
    if not isinstance(content, Mapping):
        return ""
    parts = content.get("parts")
    if not isinstance(parts, list):
        text = content.get("text")
        return text if isinstance(text, str) else ""
    pieces = [
        p if isinstance(p, str) else p.get("text") if isinstance(p, Mapping) else None
        for p in parts
    ]
    return "\n".join(p for p in pieces if isinstance(p, str) and p.strip())


def _sort_time(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return math.inf  # undated nodes keep their relative order, after the dated ones


def _chatgpt_conversation(ctx: _Context, conv: Mapping[str, Any], where: str) -> None:
    mapping = conv["mapping"]
    if not isinstance(mapping, Mapping):
        raise LoaderError(
            f"{ctx.name}: {where}: 'mapping' must be an object, got {type(mapping).__name__}",
            kind="invalid",
            source=ctx.source,
        )
    session = _conversation_session(conv, ctx.path.stem)
    extra = _title_metadata(conv)
    turns: list[tuple[float, int, dict[str, Any]]] = []
    for order, node in enumerate(mapping.values()):
        message = node.get("message") if isinstance(node, Mapping) else None
        if not isinstance(message, Mapping):
            continue  # the root node and other structural nodes carry no message
        meta = message.get("metadata")
        if isinstance(meta, Mapping) and meta.get("is_visually_hidden_from_conversation"):
            continue  # context ChatGPT injects and never shows the user
        author = message.get("author")
        author = author if isinstance(author, Mapping) else {}
        raw = {
            "role": author.get("role") if isinstance(author.get("role"), str) else None,
            "name": author.get("name") if isinstance(author.get("name"), str) else None,
            "content": _chatgpt_text(message.get("content")),
            "timestamp": message.get("create_time"),
            "id": message.get("id"),
        }
        turns.append((_sort_time(raw["timestamp"]), order, raw))
    turns.sort(key=lambda t: (t[0], t[1]))
    for _, order, raw in turns:
        ctx.message(raw, where=f"{where}, node {order}", session=session, extra=extra)


def _collect(ctx: _Context, value: Any, where: str, *, allow_list: bool = True) -> None:
    if isinstance(value, Mapping):
        if "mapping" in value:
            _chatgpt_conversation(ctx, value, where)
        elif "messages" in value:
            _conversation(ctx, value, where)
        elif "content" in value or "role" in value:
            ctx.message(value, where=where, session=ctx.path.stem)
        else:
            raise ctx.unsupported(where, value)
    elif isinstance(value, list) and allow_list:
        for index, element in enumerate(value):
            # One level only: a list of lists is no known export.
            _collect(ctx, element, f"{where} element {index}", allow_list=False)
    else:
        raise ctx.unsupported(where, value)


def _loads(ctx: _Context, text: str, lineno: int | None = None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        line = lineno if lineno is not None else exc.lineno
        raise LoaderError(
            f"{ctx.name}: invalid JSON at line {line}, column {exc.colno}: {exc.msg}",
            kind="invalid",
            source=ctx.source,
        ) from exc
    except RecursionError as exc:
        raise LoaderError(
            f"{ctx.name}: JSON is nested too deeply", kind="invalid", source=ctx.source
        ) from exc


def _finish(ctx: _Context) -> list[LoadedItem]:
    if not ctx.collector.items and ctx.first_problem is not None:
        raise LoaderError(
            f"{ctx.name}: no chat message could be loaded; the first problem: "
            f"{ctx.first_problem}",
            kind=ctx.first_problem.kind,
            source=ctx.source,
        )
    if not ctx.collector.items:
        raise LoaderError(
            f"{ctx.name}: no chat messages with text (system/tool and empty messages are skipped)",
            kind="empty",
            source=ctx.source,
        )
    return ctx.collector.items


def load_json_file(job: FileJob, data: bytes) -> list[LoadedItem]:
    """A ``.json`` chat export; see the module docstring for the accepted shapes."""
    ctx = _Context(job)
    text = decode_text(data, source=ctx.source)
    if not text.strip():
        raise LoaderError(f"{ctx.name}: file is empty", kind="empty", source=ctx.source)
    _collect(ctx, _loads(ctx, text), "top level")
    return _finish(ctx)


def load_jsonl_file(job: FileJob, data: bytes) -> list[LoadedItem]:
    """A ``.jsonl`` file: one message or conversation per line."""
    ctx = _Context(job)
    text = decode_text(data, source=ctx.source)
    # Split on "\n" only: str.splitlines would also split on U+2028, which JSON
    # allows unescaped inside strings.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            _collect(ctx, _loads(ctx, line, lineno), f"line {lineno}")
    return _finish(ctx)
