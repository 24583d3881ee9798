"""Files on disk: dispatching each file to its loader, inside its time budget."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from personalize.errors import IngestError
from personalize.types import FileError, LoadedItem

from ._chat import load_json_file, load_jsonl_file
from ._csv import load_csv_file
from ._email import load_eml_file, load_mbox_file
from ._errors import LoaderError
from ._html import load_html_file
from ._io import FileJob, ItemCollector, display_name, file_type, read_file_bytes
from ._limits import LoaderLimits
from ._office import load_docx_file, load_pptx_file
from ._pdf import load_pdf_file
from ._text import load_other_file, load_text_file
from ._walk import iter_input_files

__all__ = ["SUPPORTED_SUFFIXES", "iter_input_files", "load_path"]

logger = logging.getLogger(__name__)

_Loader = Callable[[FileJob, bytes], list[LoadedItem]]

_LOADERS: dict[str, _Loader] = {
    ".txt": load_text_file,
    ".md": load_text_file,
    ".markdown": load_text_file,
    ".rst": load_text_file,
    ".log": load_text_file,
    ".html": load_html_file,
    ".htm": load_html_file,
    ".pdf": load_pdf_file,
    ".docx": load_docx_file,
    ".pptx": load_pptx_file,
    ".eml": load_eml_file,
    ".mbox": load_mbox_file,
    ".json": load_json_file,
    ".jsonl": load_jsonl_file,
    ".csv": load_csv_file,
}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_LOADERS)
"""Suffixes with a dedicated loader (lower case). Other files load as text when they
look like text, and fail with kind ``"binary"`` otherwise."""


class _ParserWarnings:
    """Route Python warnings to DEBUG logs while any file is being parsed.

    ``warnings.catch_warnings`` swaps process-wide state; entered and left by several
    ingest threads in turn it would restore the wrong state (and leave warnings
    captured for good). So one capture is shared: the first load to start enters it,
    the last to finish leaves it. A warning another thread emits meanwhile is logged
    at DEBUG too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._catcher: warnings.catch_warnings | None = None

    @staticmethod
    def _log(message, category, *args, **kwargs):  # type: ignore[no-untyped-def]
        logger.debug("parser warning (%s): %s", category.__name__, str(message)[:300])

    @contextmanager
    def captured(self) -> Iterator[None]:
        with self._lock:
            if self._active == 0:
                self._catcher = warnings.catch_warnings()
                self._catcher.__enter__()
                warnings.simplefilter("always")  # not "error": a parser warning is no failure
                warnings.showwarning = self._log
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0 and self._catcher is not None:
                    self._catcher.__exit__(None, None, None)
                    self._catcher = None


_PARSER_WARNINGS = _ParserWarnings()


def load_path(
    path: str | os.PathLike[str],
    limits: LoaderLimits = LoaderLimits(),
    *,
    errors: list[FileError] | None = None,
) -> list[LoadedItem]:
    """Load one file into items, choosing the loader by suffix (case-insensitive).

    ``path`` is always a path (a ``str`` is never taken for text). ``.txt .md
    .markdown .rst .log`` → one document (UTF-8, or a detected legacy encoding);
    ``.html .htm`` → one document (title in metadata); ``.pdf`` → one document
    (``page_count`` in metadata); ``.docx`` → one document (paragraphs and tables);
    ``.pptx`` → one document (slide titles, text, tables and notes; ``slide_count``);
    ``.eml`` → one document, ``.mbox`` → one per e-mail; ``.json .jsonl`` → chat
    messages; ``.csv`` → chat messages or one document per row; anything else → one
    document if it looks like text.

    A path from :func:`iter_input_files` is opened relative to the walked folder
    without following links. Parsing runs under ``limits.max_parse_seconds``. Python
    warnings raised by the parsers (pypdf, ...) are logged at DEBUG, not printed.

    Args:
        path: the file.
        limits: size, count and time caps, checked before reading and while extracting.
        errors: when given, receives one :class:`FileError` per item of the file that
            had to be dropped while the rest loaded (an e-mail of a mailbox, a chat
            turn, a CSV row, a PDF page), its source ``"<path>#<where>"``. Without it,
            such drops are logged as one WARNING per file (counts only, no content).

    Returns:
        The items, in file order (chat messages in conversation order).

    Raises:
        LoaderError: the file could not be loaded; ``.kind`` says why (``"missing"``,
            ``"unreadable"``, ``"binary"``, ``"empty"``, ``"too_large"``,
            ``"too_complex"``, ``"timeout"``, ``"unsupported"``, ``"invalid"``) and the
            message names the file. No other exception escapes for a bad file.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise LoaderError(
            f"path must be a str or os.PathLike, got {type(path).__name__}",
            kind="invalid",
            source=repr(path),
        )
    if not isinstance(path, Path):
        path = Path(os.fspath(path))
    source, name = str(path), display_name(path)
    job = FileJob(path, limits)
    try:
        data = read_file_bytes(path, limits)
        job.check_time()  # the budget covers the whole load, reading included
        loader = _LOADERS.get(path.suffix.lower(), load_other_file)
        with _PARSER_WARNINGS.captured():
            items = loader(job, data)
    except IngestError:
        raise
    except MemoryError as exc:
        raise LoaderError(
            f"{name}: too large to parse in memory", kind="too_large", source=source
        ) from exc
    except RecursionError as exc:
        raise LoaderError(
            f"{name}: nested too deeply to parse", kind="too_complex", source=source
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
    if job.errors:
        if errors is not None:
            errors.extend(job.errors)
        else:
            logger.warning(
                "%s: %d item(s) could not be loaded and were dropped "
                "(pass errors= to load_path to get them)",
                name,
                len(job.errors),
            )
    logger.debug("loaded %d item(s) from %s", len(items), name)
    return items
