"""Files on disk: walking input paths and dispatching each file to its loader."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from personalize.errors import IngestError
from personalize.types import LoadedItem

from ._chat import load_json_file, load_jsonl_file
from ._csv import load_csv_file
from ._email import load_eml_file, load_mbox_file
from ._errors import LoaderError
from ._html import load_html_file
from ._io import ItemCollector, display_name, file_type, read_file_bytes
from ._limits import LoaderLimits
from ._pdf import load_pdf_file
from ._text import load_other_file, load_text_file

__all__ = ["SUPPORTED_SUFFIXES", "iter_input_files", "load_path"]

logger = logging.getLogger(__name__)

_BytesLoader = Callable[[Path, bytes, LoaderLimits], list[LoadedItem]]

_LOADERS: dict[str, _BytesLoader] = {
    ".txt": load_text_file,
    ".md": load_text_file,
    ".markdown": load_text_file,
    ".rst": load_text_file,
    ".log": load_text_file,
    ".html": load_html_file,
    ".htm": load_html_file,
    ".pdf": load_pdf_file,
    ".eml": load_eml_file,
    ".json": load_json_file,
    ".jsonl": load_jsonl_file,
    ".csv": load_csv_file,
}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset({*_LOADERS, ".mbox"})
"""Suffixes with a dedicated loader (lower case). Other files load as text when they
look like text, and fail with kind ``"binary"`` otherwise."""


def load_path(
    path: str | os.PathLike[str], limits: LoaderLimits = LoaderLimits()
) -> list[LoadedItem]:
    """Load one file into items, choosing the loader by suffix (case-insensitive).

    ``.txt .md .markdown .rst .log`` → one document; ``.html .htm`` → one document
    (title in metadata); ``.pdf`` → one document (``page_count`` in metadata);
    ``.eml`` → one document, ``.mbox`` → one per e-mail; ``.json .jsonl`` → chat
    messages; ``.csv`` → chat messages or one document per row; anything else →
    one document if it looks like text.

    Args:
        path: the file.
        limits: size caps, checked before reading and while extracting.

    Returns:
        The items, in file order (chat messages in conversation order).

    Raises:
        LoaderError: the file could not be loaded; ``.kind`` says why (``"missing"``,
            ``"unreadable"``, ``"binary"``, ``"empty"``, ``"too_large"``,
            ``"unsupported"``, ``"invalid"``) and the message names the file. No other
            exception escapes for a bad file.
    """
    try:
        path = Path(path)
    except TypeError as exc:
        raise LoaderError(
            f"path must be a str or os.PathLike, got {type(path).__name__}",
            kind="invalid",
            source=repr(path),
        ) from exc
    source, name = str(path), display_name(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".mbox":
            # The mailbox module reads the file itself; it checks size first.
            items = load_mbox_file(path, limits)
        else:
            data = read_file_bytes(path, limits)
            items = _LOADERS.get(suffix, load_other_file)(path, data, limits)
    except IngestError:
        raise
    except PermissionError as exc:
        raise LoaderError(f"{name}: permission denied", kind="unreadable", source=source) from exc
    except OSError as exc:
        raise LoaderError(
            f"{name}: cannot be read ({exc.strerror or exc})", kind="unreadable", source=source
        ) from exc
    except MemoryError as exc:
        raise LoaderError(
            f"{name}: too large to parse in memory", kind="too_large", source=source
        ) from exc
    except RecursionError as exc:
        raise LoaderError(
            f"{name}: nested too deeply to parse", kind="invalid", source=source
        ) from exc
    except Exception as exc:  # noqa: BLE001 - parsers raise anything on hostile input
        # The exception text is a parser's, not the file's content; keep it short.
        detail = str(exc)[:200]
        raise LoaderError(
            f"{name}: could not parse as {file_type(path)} ({type(exc).__name__}: {detail})",
            kind="invalid",
            source=source,
        ) from exc
    # Every loader enforces the caps while parsing; this re-check guards future ones.
    check = ItemCollector(source, limits)
    for item in items:
        check.add(item)
    logger.debug("loaded %d item(s) from %s", len(items), name)
    return items


def _resolve(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None


def _walk(directory: Path, root: Path) -> Iterator[Path]:
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        # Yield the directory itself so the caller reports it like any bad input.
        logger.debug("cannot list %s", display_name(directory))
        yield directory
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue  # hidden: VCS data, editor swap files, OS metadata
        path = Path(entry.path)
        try:
            if entry.is_symlink():
                target = _resolve(path)
                if target is None or not target.is_relative_to(root):
                    logger.debug("skipping %s: symlink leads outside %s", entry.name, root.name)
                    continue
                if entry.is_dir():
                    # Its target is inside the tree and is walked anyway; following it
                    # would only duplicate files or loop.
                    continue
                yield path  # a dangling in-tree link is reported as missing by load_path
            elif entry.is_dir(follow_symlinks=False):
                yield from _walk(path, root)
            elif entry.is_file(follow_symlinks=False):
                yield path
            # FIFOs, sockets and devices: opening them blocks or never ends.
        except OSError:
            yield path


def iter_input_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Expand input paths into the files to load.

    Files are yielded as given. Directories are walked recursively in sorted order,
    skipping hidden names (starting with ``"."``), special files, and symlinks that
    lead outside the directory being walked, so a link can never pull in data from
    elsewhere on the machine. A path that does not exist is yielded anyway, so the
    caller reports it per file.

    Args:
        paths: files and directories; a single path is accepted too.

    Yields:
        One path per file.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]  # iterating a str would yield its characters
    for raw in paths:
        path = Path(os.fsdecode(raw))
        if path.is_dir():
            root = _resolve(path)
            if root is None:
                yield path
                continue
            yield from _walk(path, root)
        else:
            yield path
