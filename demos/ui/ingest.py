"""Uploads and pasted chats → ingestion, with one clear result per file.

An upload is written to a temporary file under its own name and read by the
library's loaders, so every supported format (Markdown, text, HTML, PDF, e-mail,
mbox, CSV, chat JSON/JSONL) works exactly as it does from the CLI. The stored
source is the uploaded file's name, never the temporary path.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from personalize import IngestError, Personalizer
from personalize.loaders import load_messages, load_path
from personalize.types import FileError, IngestResult, LoadedItem

__all__ = [
    "PASTE_SOURCE",
    "FileOutcome",
    "ingest_pasted_chat",
    "ingest_upload",
    "ingest_uploads",
    "outcome_rows",
    "parse_role_lines",
    "safe_file_name",
]

PASTE_SOURCE = "pasted chat"

# Who says a line in a "role: text" paste. Everything the user might type for the
# two sides of a chat maps onto the roles the loaders know.
_ROLE_ALIASES: dict[str, str] = {
    "user": "user", "me": "user", "human": "user", "you": "user", "q": "user",
    "assistant": "assistant", "ai": "assistant", "bot": "assistant", "model": "assistant",
    "gpt": "assistant", "chatgpt": "assistant", "a": "assistant",
    "system": "system",
}
_ROLE_LINE = re.compile(r"^\s*([A-Za-z]+)\s*:\s?(.*)$")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one uploaded file (or one pasted chat).

    Attributes:
        name: the file name as uploaded.
        documents_added: documents and messages stored.
        chunks_added: chunks indexed.
        duplicates_skipped: items already present (same content).
        errors: why (parts of) it could not be read; messages name the file, never its content.
    """

    name: str
    documents_added: int = 0
    chunks_added: int = 0
    duplicates_skipped: int = 0
    errors: tuple[FileError, ...] = ()

    @property
    def status(self) -> str:
        """``"failed"``, ``"partial"`` (some items rejected), ``"duplicate"`` or ``"added"``."""
        if self.errors and not self.documents_added and not self.duplicates_skipped:
            return "failed"
        if self.errors:
            return "partial"
        if not self.documents_added and self.duplicates_skipped:
            return "duplicate"
        return "added"

    @classmethod
    def from_result(cls, name: str, result: IngestResult, extra: Sequence[FileError] = ()) -> FileOutcome:
        errors = tuple(extra) + tuple(_renamed(e, name) for e in result.errors)
        return cls(name, result.documents_added, result.chunks_added, result.duplicates_skipped, errors)


def safe_file_name(name: str) -> str:
    """The uploaded name reduced to a plain file name (no directories, no odd characters)."""
    base = Path(str(name).replace("\\", "/")).name
    cleaned = _UNSAFE_NAME.sub("_", base).strip(" .")
    return cleaned[:120] or "upload.txt"


def _renamed(error: FileError, name: str) -> FileError:
    # Loader errors carry the temporary path as source; the user knows the upload's name.
    # A dropped part keeps where it was ("#turn 3", "#page 2").
    _, sep, where = error.source.partition("#")
    return dataclasses.replace(error, source=name + sep + where)


def _load_as(name: str, data: bytes, p: Personalizer) -> tuple[list[LoadedItem], list[FileError]]:
    """Items of ``data`` read as a file called ``name``, with ``name`` as their source,
    and one error per part of the file the loader had to drop (a chat turn, a row, a page)."""
    safe = safe_file_name(name)
    dropped: list[FileError] = []
    with tempfile.TemporaryDirectory(prefix="personalize-upload-") as tmp:
        path = Path(tmp) / safe
        path.write_bytes(data)
        items = load_path(path, p.config.loader_limits, errors=dropped)
    return [dataclasses.replace(item, source=name) for item in items], [_renamed(e, name) for e in dropped]


def ingest_upload(p: Personalizer, user_id: str, name: str, data: bytes) -> FileOutcome:
    """Ingest one uploaded file for ``user_id``; a bad file gives a failed outcome, never raises.

    Args:
        p: the Personalizer.
        user_id: whose data.
        name: the file name as uploaded (its suffix picks the loader).
        data: the file's bytes.
    """
    display = safe_file_name(name)
    try:
        items, dropped = _load_as(display, data, p)
    except IngestError as exc:
        kind = getattr(exc, "kind", "unreadable")
        return FileOutcome(display, errors=(FileError(display, str(exc), kind),))
    return FileOutcome.from_result(display, p.add_documents(user_id, items, progress=False), extra=dropped)


def ingest_uploads(
    p: Personalizer,
    user_id: str,
    files: Sequence[tuple[str, bytes]],
    on_progress: Callable[[float, str], None] | None = None,
) -> list[FileOutcome]:
    """Ingest several uploads one by one, reporting progress after each."""
    outcomes: list[FileOutcome] = []
    for n, (name, data) in enumerate(files):
        if on_progress:
            on_progress(n / len(files), f"reading {safe_file_name(name)} ({n + 1}/{len(files)})")
        outcomes.append(ingest_upload(p, user_id, name, data))
    if on_progress:
        on_progress(1.0, f"{len(files)} file(s) processed")
    return outcomes


# ------------------------------------------------------------------ pasted chats
def parse_role_lines(text: str, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """``role: text`` lines as chat messages; lines without a role continue the previous turn.

    Roles: ``user``/``me``/``human``, ``assistant``/``ai``/``bot``, ``system``
    (case-insensitive). Every turn is stamped with ``now`` (the time it was
    pasted), so newer statements supersede older persona facts.

    Raises:
        ValueError: the first line names no role, or there is no text.
    """
    stamp = (now or datetime.now(timezone.utc)).isoformat()
    messages: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        match = _ROLE_LINE.match(line)
        role = _ROLE_ALIASES.get(match.group(1).lower()) if match else None
        if role is not None and match is not None:
            messages.append({"role": role, "content": match.group(2).strip(), "timestamp": stamp})
        elif line.strip():
            if not messages:
                raise ValueError(
                    f"line {lineno}: expected 'role: text' (for example 'user: I love hiking'), "
                    "or paste JSON (a list of {role, content} messages or a chat export)"
                )
            messages[-1]["content"] = (messages[-1]["content"] + "\n" + line.strip()).strip()
    messages = [m for m in messages if m["content"]]
    if not messages:
        raise ValueError("the pasted chat has no text")
    return messages


def _looks_like_json(text: str) -> bool:
    return text.lstrip()[:1] in ("[", "{")


def ingest_pasted_chat(
    p: Personalizer, user_id: str, text: str, *, session: str | None = None
) -> FileOutcome:
    """Ingest a pasted chat: JSON / JSON Lines (any export the loaders accept) or ``role: text`` lines.

    Never raises for bad input: the outcome's errors say what is wrong.
    """
    session = (session or "").strip() or None
    if not text.strip():
        return _failed_paste("nothing was pasted", kind="empty")
    if _looks_like_json(text):
        # One JSON value → .json; several lines of JSON → .jsonl (the loaders tell which works).
        try:
            json.loads(text)
            suffix = ".json"
        except json.JSONDecodeError:
            suffix = ".jsonl"
        try:
            items, dropped = _load_as(PASTE_SOURCE + suffix, text.encode("utf-8"), p)
        except IngestError as exc:
            return _failed_paste(str(exc).replace(f"pasted chat{suffix}", PASTE_SOURCE), exc)
        items = [dataclasses.replace(i, source=PASTE_SOURCE, session=session or i.session) for i in items]
        dropped = [_renamed(e, PASTE_SOURCE) for e in dropped]
        return FileOutcome.from_result(PASTE_SOURCE, p.add_documents(user_id, items, progress=False), dropped)
    try:
        messages = parse_role_lines(text)
    except ValueError as exc:
        return _failed_paste(str(exc))
    # load_messages (not add_messages) so the stored source reads "pasted chat".
    try:
        items, rejected = load_messages(
            messages, session=session or _paste_session(), source=PASTE_SOURCE, limits=p.config.loader_limits
        )
    except IngestError as exc:  # the paste as a whole is unusable (too many turns)
        return _failed_paste(str(exc), exc)
    result = p.add_documents(user_id, items, progress=False)
    return FileOutcome.from_result(PASTE_SOURCE, result, rejected)


def _failed_paste(message: str, exc: BaseException | None = None, *, kind: str = "invalid") -> FileOutcome:
    return FileOutcome(PASTE_SOURCE, errors=(FileError(PASTE_SOURCE, message, getattr(exc, "kind", kind)),))


def _paste_session() -> str:
    return "pasted-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def outcome_rows(outcomes: Sequence[FileOutcome]) -> list[Mapping[str, Any]]:
    """One table row per outcome (for ``st.table``)."""
    return [
        {
            "file": o.name,
            "result": o.status,
            "documents": o.documents_added,
            "chunks": o.chunks_added,
            "duplicates": o.duplicates_skipped,
            "errors": len(o.errors),
        }
        for o in outcomes
    ]
