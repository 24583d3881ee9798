"""Managing a user's memory item by item: documents, sessions, facts, the agentic memory, history.

Item operations live on resource objects (``p.documents.list``,
``p.facts.add``), as in the openai and stripe clients, so the facade stays
readable. Every resource method has an ``a``-prefixed async twin.

Deletes cascade in the store's transaction (chunks, facts drawn only from the
items, summaries built from them, memory lines restating the facts that went)
and then in this process's derived copies (vectors, BM25, cached facts and
query vectors). Another process or host drops its copies at its next access
of the user: their data version no longer matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._async_api import asyncify
from ._ids import validate_user_id
from ._validate import as_datetime, as_str_list, as_where
from .errors import ConfigError, NotFoundError
from .types import Change, DeleteResult, Item, Page, SessionInfo

if TYPE_CHECKING:
    from .personalizer import Personalizer
    from .types import Fact, Memory

__all__ = ["Documents", "Facts", "ItemsMixin", "Sessions"]

_MAX_PAGE = 1000


def _keys(ids: object) -> list[str | int] | None:
    """Caller ids (str) or internal ids (int); a bare str or int is one id."""
    if ids is None:
        return None
    if isinstance(ids, (str, int)) and not isinstance(ids, bool):
        return [ids]
    if not isinstance(ids, (list, tuple, set, frozenset)):
        raise ConfigError(f"ids must be a str, an int or a list of them, not {type(ids).__name__}")
    out: list[str | int] = []
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ConfigError("ids must hold caller ids (str) or internal ids (int)")
        out.append(value)
    return out


class _Resource:
    def __init__(self, owner: Personalizer) -> None:
        self._p = owner

    def _user(self, user_id: str, *, must_exist: bool = True) -> str:
        validate_user_id(user_id)
        if must_exist and not self._p.store.has_user(user_id):
            raise NotFoundError("unknown user (ids are case-sensitive)")
        return user_id

    @staticmethod
    def _filters(
        kind: str | None, session: str | None, source: str | Sequence[str] | None,
        since: object, until: object, where: object,
    ) -> dict[str, Any]:
        if kind is not None and kind not in ("document", "message"):
            raise ConfigError("kind must be 'document' or 'message'")
        if session is not None and not isinstance(session, str):
            raise ConfigError("session must be a str")
        return {
            "kinds": [kind] if kind else None,
            "sessions": [session] if session is not None else None,
            "sources": as_str_list(source, "source"),
            "since": as_datetime(since, "since"),
            "until": as_datetime(until, "until"),
            "where": as_where(where),
        }

    def _delete(self, user_id: str, doc_ids: list[int], operation: str) -> DeleteResult:
        p = self._p
        with p._sync_lock:  # the write gate: a search never sees the rows gone and the vectors still there
            counts = p.store.delete_documents(user_id, doc_ids, operation=operation)
            if counts.documents:
                # This process's copies follow at once; other processes and hosts
                # at their next access (the data version moved).
                p.index.delete(user_id, counts.chunk_ids)
                p.lexical.forget_cached(user_id)
                refresher = p.__dict__.get("_refresher_obj")
                if refresher is not None:
                    refresher.facts.forget_cache(user_id)
            p._ensure_synced(user_id)
        return DeleteResult(counts.documents, counts.chunks, counts.facts)


@asyncify("list", "get", "delete")
class Documents(_Resource):
    """A user's documents and chat turns: ``p.documents``."""

    def list(
        self,
        user_id: str,
        *,
        kind: str | None = None,
        session: str | None = None,
        source: str | Sequence[str] | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        where: dict[str, Any] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """One page of the user's items (documents and messages), oldest first.

        Args:
            kind: ``"document"`` or ``"message"``.
            session, source, since, until, where: filters (as in ``search``).
            limit: items per page (1 to 1000).
            cursor: ``next_cursor`` of the previous page. Pages are stable under
                concurrent writes: no item is returned twice or skipped.

        Raises:
            NotFoundError: unknown user.
        """
        self._user(user_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_PAGE:
            raise ConfigError(f"limit must be an int from 1 to {_MAX_PAGE}")
        if cursor is not None and not isinstance(cursor, str):
            raise ConfigError("cursor must be a str returned by a previous page")
        filters = self._filters(kind, session, source, since, until, where)
        return self._p.store.list_items(user_id, limit=limit, cursor=cursor, **filters)

    def get(self, user_id: str, id: str | int) -> Item:
        """One item by caller id (``str``) or internal id (``int``).

        Raises:
            NotFoundError: unknown user or item.
        """
        self._user(user_id)
        (key,) = _keys(id) or [None]
        return self._p.store.get_item(user_id, key)

    def delete(
        self,
        user_id: str,
        *,
        ids: str | int | Sequence[str | int] | None = None,
        session: str | None = None,
        source: str | Sequence[str] | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        where: dict[str, Any] | None = None,
        kind: str | None = None,
    ) -> DeleteResult:
        """Delete items by ids, session, source, time range or metadata filter (all given must match).

        What was derived only from them goes too: chunks, vectors, BM25
        entries, persona facts whose only evidence they were (facts with other
        evidence keep it; hand-made facts stay), memory lines restating those
        facts; task summaries built from them are dropped and rebuilt by the
        next ``refresh``. Nothing of their text stays in the data directory.

        Raises:
            ConfigError: no selector given (use ``forget`` to delete everything).
            NotFoundError: unknown user.
        """
        keys = _keys(ids)
        filters = self._filters(kind, session, source, since, until, where)
        if keys is None and all(v is None for v in filters.values()):
            raise ConfigError("give ids or a filter (session, source, since, until, where, kind); "
                              "forget() deletes a whole user")
        self._user(user_id)
        doc_ids = self._p.store.select_document_ids(user_id, keys=keys, **filters)
        return self._delete(user_id, doc_ids, "delete")


@asyncify("list", "delete")
class Sessions(_Resource):
    """A user's chat sessions: ``p.sessions``."""

    def list(self, user_id: str) -> list[SessionInfo]:
        """Every chat session of the user, with its turn count and time span."""
        self._user(user_id)
        return self._p.store.sessions(user_id)

    def delete(self, user_id: str, session: str) -> DeleteResult:
        """Delete every turn of one session (with the cascade of ``documents.delete``).

        Raises:
            NotFoundError: unknown user or session.
        """
        self._user(user_id)
        if not isinstance(session, str):
            raise ConfigError("session must be a str")
        doc_ids = self._p.store.select_document_ids(user_id, sessions=[session])
        if not doc_ids:
            raise NotFoundError("no such session for this user")
        return self._delete(user_id, doc_ids, "delete_session")


@asyncify("list", "add", "edit", "delete")
class Facts(_Resource):
    """A user's persona facts: ``p.facts``. Hand-made facts survive ``refresh`` and win conflicts."""

    def _repo(self) -> Any:
        return self._p._refresher().facts

    def list(self, user_id: str, *, history: bool = False) -> list[Fact]:
        """Current facts, oldest first (``history=True``: superseded ones too)."""
        validate_user_id(user_id)
        return self._repo().facts(user_id, history=history)

    def add(
        self, user_id: str, text: str, *, category: str = "preference", subject: str | None = None
    ) -> Fact:
        """Add a fact by hand (``generator == "manual"``).

        It supersedes current facts on the same subject (derived from the text
        like an extracted fact's, unless given), and later extracted facts that
        contradict it go to history instead of replacing it.
        """
        self._user(user_id, must_exist=False)
        text, category, subject = _fact_fields(text, category, subject)
        return self._repo().add_manual(user_id, text, category=category, subject=subject)

    def edit(self, user_id: str, fact_id: int, text: str, *, category: str | None = None) -> Fact:
        """Replace a current fact with an edited one (the old one stays in history).

        Raises:
            NotFoundError: no such current fact.
        """
        self._user(user_id)
        if isinstance(fact_id, bool) or not isinstance(fact_id, int):
            raise ConfigError("fact_id must be an int")
        old = next((f for f in self._repo().facts(user_id) if f.id == fact_id), None)
        if old is None:
            raise NotFoundError("no such current fact for this user")
        text, category, subject = _fact_fields(text, category or old.category, old.subject)
        return self._repo().add_manual(user_id, text, category=category, subject=subject, replaces=fact_id)

    def delete(self, user_id: str, fact_id: int) -> None:
        """Delete one fact; facts it had replaced are current again (or answer to its successor)."""
        self._user(user_id)
        if isinstance(fact_id, bool) or not isinstance(fact_id, int):
            raise ConfigError("fact_id must be an int")
        self._repo().delete_fact(user_id, fact_id)


def _fact_fields(text: object, category: object, subject: object) -> tuple[str, str, str]:
    if not isinstance(text, str) or not text.strip() or len(text) > 2000:
        raise ConfigError("text must be a non-empty str of at most 2,000 characters")
    if not isinstance(category, str) or not category.strip():
        raise ConfigError("category must be a non-empty str")
    if subject is not None and (not isinstance(subject, str) or not subject.strip()):
        raise ConfigError("subject must be a non-empty str")
    text = " ".join(text.split())
    if subject is None:
        from .persona.lexicon import normalize_text
        from .persona.rules import extract_statements

        # The subject an extracted fact would get, so the hand-made one meets it:
        # "Favorite editor is Helix" is read as "My favorite editor is Helix".
        lowered = text[0].lower() + text[1:]
        subject = None
        for variant in (text, f"My {lowered}", f"I {lowered}", f"I'm {lowered}"):
            found = extract_statements(variant)
            if found:
                subject = found[-1].subject
                break
        subject = subject or "manual:" + normalize_text(text)[:120]
    return text, category.strip(), subject


class ItemsMixin:
    """The item-level resources and the history, on :class:`personalize.Personalizer`."""

    @property
    def documents(self) -> Documents:
        """The user's documents and chat turns: list, get, delete."""
        return self.__dict__.setdefault("_documents_resource", Documents(self))  # type: ignore[arg-type]

    @property
    def sessions(self) -> Sessions:
        """The user's chat sessions: list, delete."""
        return self.__dict__.setdefault("_sessions_resource", Sessions(self))  # type: ignore[arg-type]

    @property
    def facts(self) -> Facts:
        """The user's persona facts: list, add, edit, delete."""
        return self.__dict__.setdefault("_facts_resource", Facts(self))  # type: ignore[arg-type]

    def history(self, user_id: str, *, since: datetime | str | None = None) -> list[Change]:
        """Every change of ``user_id``'s data (what, when, which call), oldest first; ids and counts, no text."""
        validate_user_id(user_id)
        return self.store.history(user_id, since=as_datetime(since, "since"))  # type: ignore[attr-defined]

    def set_memory(self, user_id: str, text: str) -> Memory:
        """Store ``text`` as a new version of ``user_id``'s agentic memory (``generator == "manual"``).

        The history keeps earlier versions; the next ``refresh`` rewrites from this one.
        """
        from .memory import AgenticMemory
        from .storage import new_call_id

        validate_user_id(user_id)
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("text must be a non-empty str")
        store = self.store  # type: ignore[attr-defined]
        memory = AgenticMemory(store)
        text = memory.bound(text)
        with store.transaction(user_id) as cur:
            version = store._lock_user(cur, user_id)
            number = memory.save(cur, user_id, text, "manual", version)
            store.record(cur, user_id, "set_memory", new_call_id(), "memory", {"version": number})
        latest = memory.latest(user_id)
        assert latest is not None
        return latest
