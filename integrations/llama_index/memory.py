"""``PersonalMemoryBlock``: the user's long-term knowledge as a ``llama_index.core.memory.Memory`` block.

::

    memory = Memory.from_defaults(session_id="alice-1", memory_blocks=[PersonalMemoryBlock(p, "alice")])
    engine = SimpleChatEngine.from_defaults(llm=llm, memory=memory)

On every turn the block contributes the user's persona facts (best matches to
the latest message first), task summary and memory document, packed under
``budget_tokens`` and rendered like :meth:`PersonalContext.to_prompt` (quoted,
cited, injection-safe).

**Write-back.** When ``Memory`` flushes old turns out of its short-term queue,
the block writes the roles the host opted into (``write_roles``; default: the
user's own turns only) into the user's history with
:meth:`Personalizer.add_messages`, labeled with the chat session (``session``,
else the ``Memory``'s ``session_id``) and ``metadata={"written_by":
"PersonalMemoryBlock"}``. They are searchable at once, become persona facts and
summaries at the next refresh, and are listed and deleted like any other
items (``p.sessions.list(user)``, ``p.documents.delete(user, session=...)``).

Prompt text is never written back: a turn that carries personal context the
block (or any personalize component) injected, recognized verbatim or by its
``<user_data>`` sections (which user data cannot forge), has that context cut
out, and system prompts the block has seen are cut out too; an assistant turn
that echoes the context (a model repeating its prompt) is dropped whole.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, Optional

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.memory.memory import BaseMemoryBlock

from personalize._ids import validate_user_id
from personalize.agent.context import ContextItem, ContextSection, Source, render_prompt
from personalize.agent.packing import truncate_text
from personalize.errors import ConfigError
from personalize.tokens import TokenCounter, default_token_counter

from ._nodes import _LABEL_SUFFIX, _LABELS

__all__ = ["PersonalMemoryBlock", "personal_memory_text", "strip_injected"]

logger = logging.getLogger(__name__)

_ROLES = {"user": "user", "assistant": "assistant", "chatbot": "assistant", "model": "assistant"}
_MIN_PART_TOKENS = 12  # a shorter prefix of a summary or memory says nothing useful
_FACT_SHARE = 0.5  # facts first, up to half the budget; the summary and memory get the rest
_MAX_FACTS = 32
_WRITABLE_ROLES = ("user", "assistant")
_REMEMBERED = 16  # rendered texts and system prompts kept to recognize echoes
WRITTEN_BY = "PersonalMemoryBlock"

# What personalize renders (agent/context.py): an optional header line, then
# sections "## Title (quoted, not instructions)" + <user_data> ... </user_data>.
# User data inside is defused (agent/_safety.py), so these tags mark rendered
# context, never the user's own words.
_HEADER_RE = re.compile(r"^[ \t]*Personal context[^\n]*never instructions\.[ \t]*\n?", re.MULTILINE)
# A personal node's text (_nodes.py), as a retriever or postprocessor put it into a prompt.
_NODE_RE = re.compile(
    r"^[ \t]*\[(?:" + "|".join(re.escape(label) for label in [*_LABELS.values(), "User data"])
    + r"); " + re.escape(_LABEL_SUFFIX) + r"\][^\n]*\n?", re.MULTILINE
)
_SECTION_RE = re.compile(r"(?:^[ \t]*##[^\n]*\n)?[ \t]*<user_data>.*?</user_data>[ \t]*\n?", re.DOTALL | re.MULTILINE)


def _item(kind: str, text: str, score: float, sources: Sequence[Source] = (), **metadata: Any) -> ContextItem:
    return ContextItem(kind=kind, text=text, score=score, tokens=0, sources=tuple(sources), metadata=metadata)


def _render(task: str | None, facts: list[ContextItem], summary: ContextItem | None,
            memory: ContextItem | None) -> str:
    sections = [
        ContextSection("summary", (summary,) if summary else ()),
        ContextSection("persona", tuple(facts)),
        ContextSection("memory", (memory,) if memory else ()),
    ]
    return render_prompt(task, [s for s in sections if s.items])


def _fit_part(
    item: ContextItem, overflow: Callable[[ContextItem], int], counter: TokenCounter
) -> ContextItem | None:
    """``item``, or its longest prefix for which ``overflow(item) <= 0``, or ``None``."""
    over = overflow(item)
    if over <= 0:
        return item
    room = counter.count(item.text) - over
    while room >= _MIN_PART_TOKENS:
        text = truncate_text(item.text, room, counter)
        candidate = _item(item.kind, text, item.score, item.sources, **{**item.metadata, "truncated": True})
        over = overflow(candidate) if text else 1
        if over <= 0:
            return candidate
        # Token counts of joined text are not additive: shrink by what still overflows.
        room -= max(1, over)
    return None


def personal_memory_text(
    personalizer: Any,
    user_id: str,
    query: str,
    *,
    task: str | None = None,
    budget_tokens: int = 384,
    counter: TokenCounter | None = None,
) -> str:
    """The user's persona facts, task summary and memory document, rendered under ``budget_tokens``.

    Facts come first (best match to ``query``, up to half the budget), then the
    task summary and the memory document (truncated at a sentence to fit), then
    more facts while they fit.

    Args:
        personalizer: the :class:`~personalize.Personalizer`.
        user_id: whose knowledge.
        query: the latest user message (``""``: newest facts first).
        task: the summary's task (``None``: ``"chat"`` when registered).
        budget_tokens: the most tokens of the returned text.
        counter: counts tokens (default: cl100k_base).

    Returns:
        The rendered text, ``""`` when the user has no persona, summary or memory yet.
    """
    validate_user_id(user_id)
    counter = counter or default_token_counter()
    p = personalizer
    if not p.store.has_user(user_id):
        return ""
    tasks = getattr(p, "tasks", None)
    if task is None and tasks is not None and "chat" in tasks:
        task = "chat"

    if query.strip():
        matches = p.persona_matches(user_id, p.queries.embed_one(query), _MAX_FACTS)
    else:  # newest first, all equally relevant
        matches = [(f, 0.5) for f in reversed(p.persona(user_id))][:_MAX_FACTS]
    chunk_ids = sorted({int(c) for fact, _ in matches for c in fact.sources})
    chunks = p.store.chunks(user_id, chunk_ids) if chunk_ids else {}

    def sources(ids: Sequence[int]) -> list[Source]:
        out = []
        for cid in ids:
            c = chunks.get(int(cid))
            out.append(Source(int(cid)) if c is None else Source(c.id, c.doc_id, c.external_id, c.source))
        return out

    facts = [_item("fact", f.text, float(s), sources(f.sources), category=f.category) for f, s in matches]
    summary_row = p.summary(user_id, task) if task is not None and tasks is not None else None
    summary = _item("summary", summary_row.text, 0.8) if summary_row and summary_row.text.strip() else None
    memory_row = p.memory(user_id)
    memory = _item("memory", memory_row.text, 0.5) if memory_row and memory_row.text.strip() else None

    chosen: list[ContextItem] = []
    picked: dict[str, ContextItem | None] = {"summary": None, "memory": None}

    def size(extra_facts: Sequence[ContextItem] = (), **parts: ContextItem | None) -> int:
        current = {**picked, **parts}
        return counter.count(_render(task, [*chosen, *extra_facts], current["summary"], current["memory"]))

    rest = list(facts)
    while rest and size([rest[0]]) <= budget_tokens * _FACT_SHARE:
        chosen.append(rest.pop(0))
    for name, part in (("summary", summary), ("memory", memory)):
        if part is not None:
            picked[name] = _fit_part(part, lambda it, n=name: size(**{n: it}) - budget_tokens, counter)
    for fact in rest:
        if size([fact]) <= budget_tokens:
            chosen.append(fact)
    return _render(task, chosen, picked["summary"], picked["memory"])


def _spans(text: str, known: Iterable[str]) -> list[tuple[int, int]]:
    spans = []
    for part in {k.strip() for k in known if k and k.strip()}:
        start = text.find(part)
        while start >= 0:
            spans.append((start, start + len(part)))
            start = text.find(part, start + len(part))
    for pattern in (_HEADER_RE, _SECTION_RE, _NODE_RE):
        spans.extend(m.span() for m in pattern.finditer(text))
    return spans


_CLOSING_TAGS_RE = re.compile(r"^(?:\s*</[A-Za-z_][\w-]*>)+")


def strip_injected(text: str, known: Iterable[str] = ()) -> tuple[str, bool]:
    """The part of a chat turn after any prompt text that was injected into it.

    Injected text is personal context as personalize renders it (its
    ``<user_data>`` sections, which user data cannot forge, and personal node
    lines) and any of the ``known`` texts (rendered blocks, system prompts).
    Prompt templates put the user's own words last, so what follows the last
    injected piece (less the closing tags of a wrapper such as ``Memory``'s
    ``</memory>``) is the turn's own text.

    Args:
        text: a chat turn's text.
        known: texts that were put into the prompt.

    Returns:
        The turn's own text (stripped; all of it when nothing was injected) and
        whether anything injected was found.
    """
    spans = _spans(text, known)
    if not spans:
        return text.strip(), False
    rest = text[max(end for _, end in spans):]
    return _CLOSING_TAGS_RE.sub("", rest).strip(), True


def _turns(messages: Sequence[ChatMessage], roles: Sequence[str], known: Iterable[str]) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc)
    known = list(known)
    turns = []
    for message in messages:
        role = _ROLES.get(str(getattr(message.role, "value", message.role)))
        text = message.content
        if role is None or role not in roles or not text or not text.strip():
            continue  # system prompts and tool plumbing say nothing about the user
        text, injected = strip_injected(text, known)
        if injected and role == "assistant":
            continue  # a model echoing its prompt: nothing of it is the conversation
        if not text:
            continue
        kwargs = message.additional_kwargs
        turns.append({
            "role": role,
            "content": text,
            # ChatMessage has no time; a flush comes soon after the turn, so "now" is close.
            "timestamp": kwargs.get("timestamp") or now,
        })
    return turns


class PersonalMemoryBlock(BaseMemoryBlock[str]):
    """A ``Memory`` block backed by the user's personal knowledge.

    Args:
        personalizer: the :class:`~personalize.Personalizer` holding the user's data.
        user_id: whose knowledge.
        name: the block's name (its tag in the memory template).
        task: the task whose summary to include (``None``: ``"chat"``).
        budget_tokens: the most tokens the block contributes per turn; 0 makes
            it a write-back-only block (when a :class:`PersonalizedRetriever`
            already adds the persona and summary to the prompt).
        write_back: write flushed turns into the user's history.
        write_roles: which turns to write back: ``("user",)`` (default: the
            user's own words), or ``("user", "assistant")``.
        session: the chat session label of written turns (default: the
            ``Memory``'s ``session_id``; without one, a label generated per block,
            ``llamaindex-<hex>``).
        refresh_on_write: run :meth:`Personalizer.refresh` after writing turns,
            so new facts show at once (costs LLM calls when an LLM is configured).
        counter: counts tokens (default: cl100k_base, offline).

    Raises:
        InvalidUserIdError: ``user_id`` is invalid.
        ConfigError: ``budget_tokens`` < 0, or an unknown role in ``write_roles``.
    """

    name: str = Field(default="personal_context", description="The memory block's name.")
    description: Optional[str] = Field(
        default="The user's persona facts, task summary and memory, from their own data.",
        description="A description of the memory block.",
    )
    user_id: str = Field(description="Whose personal knowledge to contribute.")
    task: Optional[str] = Field(default=None, description="The summary's task; None uses 'chat'.")
    budget_tokens: int = Field(default=384, description="The most tokens contributed per turn.")
    write_back: bool = Field(default=True, description="Write flushed chat turns into the user's history.")
    write_roles: tuple[str, ...] = Field(default=("user",), description="Roles of the turns written back.")
    session: Optional[str] = Field(default=None, description="Session label of written turns.")
    refresh_on_write: bool = Field(default=False, description="Refresh the user's knowledge after a write.")

    _personalizer: Any = PrivateAttr()
    _counter: Any = PrivateAttr()
    _injected: Any = PrivateAttr()
    _default_session: str = PrivateAttr()

    def __init__(
        self,
        personalizer: Any,
        user_id: str,
        *,
        counter: TokenCounter | None = None,
        **kwargs: Any,
    ) -> None:
        validate_user_id(user_id)
        budget = kwargs.get("budget_tokens", 384)
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise ConfigError("budget_tokens must be an int >= 0")
        roles = kwargs.get("write_roles", ("user",))
        if isinstance(roles, str) or not set(roles) <= set(_WRITABLE_ROLES):
            raise ConfigError(f"write_roles must be a sequence of {_WRITABLE_ROLES}, got {roles!r}")
        if "write_roles" in kwargs:
            kwargs["write_roles"] = tuple(roles)
        super().__init__(user_id=user_id, **kwargs)
        self._personalizer = personalizer
        self._counter = counter or default_token_counter()
        # What this block put into prompts (and system prompts it saw), to recognize echoes.
        self._injected = deque(maxlen=_REMEMBERED)
        self._default_session = f"llamaindex-{uuid.uuid4().hex[:12]}"

    @classmethod
    def from_defaults(cls, personalizer: Any, user_id: str, **kwargs: Any) -> PersonalMemoryBlock:
        """Same as the constructor (the LlamaIndex spelling)."""
        return cls(personalizer, user_id, **kwargs)

    def for_user(self, user_id: str) -> PersonalMemoryBlock:
        """A copy for ``user_id`` with the same personalizer and settings."""
        validate_user_id(user_id)
        clone = self.model_copy(update={"user_id": user_id})
        clone._personalizer = self._personalizer
        clone._counter = self._counter
        clone._injected = deque(maxlen=_REMEMBERED)
        clone._default_session = f"llamaindex-{uuid.uuid4().hex[:12]}"
        return clone

    def _remember_system(self, messages: Sequence[ChatMessage] | None) -> None:
        for m in messages or ():
            if str(getattr(m.role, "value", m.role)) == "system" and m.content and m.content.strip():
                if m.content not in self._injected:
                    self._injected.append(m.content)

    async def _aget(self, messages: list[ChatMessage] | None = None, **block_kwargs: Any) -> str:
        self._remember_system(messages)
        if self.budget_tokens == 0:
            return ""  # Memory leaves an empty block out of the prompt
        query = next((m.content or "" for m in reversed(messages or []) if m.role == "user"), "")
        query, _ = strip_injected(query, self._injected)
        text = await asyncio.to_thread(
            personal_memory_text, self._personalizer, self.user_id, query,
            task=self.task, budget_tokens=self.budget_tokens, counter=self._counter,
        )
        if text and text not in self._injected:
            self._injected.append(text)
        return text

    def _session_of(self, messages: Sequence[ChatMessage]) -> str:
        if self.session:
            return self.session
        found = next((m.additional_kwargs.get("session_id") for m in messages
                      if m.additional_kwargs.get("session_id")), None)
        return str(found) if found else self._default_session

    async def _aput(self, messages: list[ChatMessage]) -> None:
        self._remember_system(messages)
        if not self.write_back:
            return
        turns = _turns(messages, self.write_roles, self._injected)
        if not turns:
            return
        p = self._personalizer
        session = self._session_of(messages)
        metadata = {"written_by": WRITTEN_BY}
        if hasattr(p, "aadd_messages"):
            result = await p.aadd_messages(self.user_id, turns, session=session, metadata=metadata)
        else:
            result = await asyncio.to_thread(p.add_messages, self.user_id, turns, session=session, metadata=metadata)
        if result.errors:
            logger.warning("%d of %d flushed chat turns could not be stored", len(result.errors), len(turns))
        logger.debug("stored %d flushed chat turns", result.chunks_added)
        if self.refresh_on_write:
            if hasattr(p, "arefresh"):
                await p.arefresh(self.user_id)
            else:
                await asyncio.to_thread(p.refresh, self.user_id)
