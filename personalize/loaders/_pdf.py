"""PDF → text with pypdf, with a bound on how much compressed content is inflated."""

from __future__ import annotations

import contextvars
import io
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from personalize.types import LoadedItem

from ._errors import LoaderError
from ._io import FileJob, display_name
from ._limits import LoaderLimits

__all__ = ["load_pdf_file"]

logger = logging.getLogger(__name__)

# Content streams hold drawing operators around the text, so they are several times
# larger than the text they show. Ten bytes per allowed character keeps real
# documents well inside the budget while a deflate bomb (1000:1) is caught after
# inflating only a bounded amount, counted but never held in memory.
_CONTENT_BYTES_PER_CHAR = 10
_INFLATE_CHUNK = 64 * 1024
_FLATE_NAMES = frozenset({"/FlateDecode", "/Fl"})


# pypdf reports recoverable damage ("Ignoring wrong pointing object") on its own
# loggers at WARNING, which reaches a user's terminal through logging's last-resort
# handler. While this module parses, those records are demoted to DEBUG; pypdf's
# logging elsewhere in the process is left alone.
_PARSING = contextvars.ContextVar("personalize_pdf_parsing", default=False)


class _DemoteWhileParsing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _PARSING.get() and record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(__name__).isEnabledFor(logging.DEBUG)
        return True


_DEMOTE = _DemoteWhileParsing()
_demoting = False


def _demote_pypdf_logs() -> None:
    """Put the filter on pypdf's loggers: one per module, since a logger's filters do
    not apply to records its children propagate to it."""
    global _demoting
    if _demoting:
        return
    import pkgutil

    import pypdf

    names = ["pypdf"] + [m.name for m in pkgutil.walk_packages(pypdf.__path__, "pypdf.")]
    for name in names:
        log = logging.getLogger(name)
        if _DEMOTE not in log.filters:
            log.addFilter(_DEMOTE)
    _demoting = True


def _inflated_size(raw: bytes, cap: int) -> int:
    """Bytes ``raw`` inflates to, counting at most just past ``cap``; output is discarded."""
    inflater = zlib.decompressobj()
    total = 0
    pending = raw
    try:
        while total <= cap and not inflater.eof:
            out = inflater.decompress(pending, _INFLATE_CHUNK)
            pending = inflater.unconsumed_tail
            total += len(out)
            if not out and not pending:
                break
    except zlib.error:
        # Corrupt data: leave it to pypdf, which has its own recovery and limits.
        pass
    return total


def _filters(stream: Any) -> list[str]:
    value = stream.get("/Filter")
    if value is None:
        return []
    value = value.get_object()
    if isinstance(value, list):
        return [str(v.get_object()) for v in value]
    return [str(value)]


def _content_streams(page: Any, seen: set[int]) -> Iterator[Any]:
    """The page's content streams and, recursively, its form XObjects (pypdf reads both)."""
    contents = page.get("/Contents")
    if contents is not None:
        contents = contents.get_object()
        items = contents if isinstance(contents, list) else [contents]
        for ref in items:
            stream = ref.get_object()
            if id(stream) not in seen:
                seen.add(id(stream))
                yield stream
    stack = [page.get("/Resources")]
    while stack:
        resources = stack.pop()
        if resources is None:
            continue
        resources = resources.get_object()
        xobjects = resources.get("/XObject") if hasattr(resources, "get") else None
        if xobjects is None:
            continue
        for ref in xobjects.get_object().values():
            xobject = ref.get_object()
            if id(xobject) in seen or xobject.get("/Subtype") != "/Form":
                continue
            seen.add(id(xobject))
            yield xobject
            stack.append(xobject.get("/Resources"))


class _ContentBudget:
    def __init__(self, path: Path, limits: LoaderLimits) -> None:
        self.remaining = limits.max_text_chars * _CONTENT_BYTES_PER_CHAR
        self.limits = limits
        self.path = path
        self.seen: set[int] = set()

    def charge(self, page: Any, page_number: int) -> None:
        for stream in _content_streams(page, self.seen):
            # The still-encoded bytes; pypdf has already decrypted them if needed.
            raw = getattr(stream, "_data", None)
            if not isinstance(raw, bytes):
                continue
            filters = _filters(stream)
            if not filters:
                size = len(raw)
            elif filters[0] in _FLATE_NAMES:
                size = _inflated_size(raw, self.remaining)
            else:
                continue  # rarer filters: pypdf's own output caps apply
            self.remaining -= size
            if self.remaining < 0:
                raise LoaderError(
                    f"{display_name(self.path)}: page {page_number} content inflates beyond what "
                    f"{self.limits.max_text_chars} characters of text could need "
                    "(a compression bomb?)",
                    kind="too_large",
                    source=str(self.path),
                )


def _open(path: Path, data: bytes) -> Any:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    source, name = str(path), display_name(path)
    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        # Many PDFs are encrypted with an empty user password (only editing is
        # restricted); those open without asking anyone for anything.
        try:
            opened = reader.decrypt("")
        except (DependencyError, NotImplementedError) as exc:
            raise LoaderError(
                f"{name}: encrypted with a method that needs an extra package ({exc})",
                kind="unreadable",
                source=source,
            ) from exc
        if not opened:
            raise LoaderError(
                f"{name}: PDF is password-protected; decrypt it first",
                kind="unreadable",
                source=source,
            )
    return reader


def load_pdf_file(job: FileJob, data: bytes) -> list[LoadedItem]:
    """A PDF as one document: every page's text, pages separated by a blank line.

    A page whose text extraction fails is reported as ``"<path>#page <n>"`` (and listed
    in the ``failed_pages`` metadata); the other pages are kept. pypdf's warnings and
    log records about recoverable damage become DEBUG logs.

    Raises:
        LoaderError: ``"unreadable"`` (password-protected), ``"too_large"`` (text or
            inflated content beyond ``limits``), ``"empty"`` (no text layer: scanned
            pages need OCR first) or ``"invalid"`` (not a parsable PDF).
    """
    # (Python warnings raised while parsing are captured by load_path.)
    _demote_pypdf_logs()
    token = _PARSING.set(True)
    try:
        return _load_pdf(job, data)
    finally:
        _PARSING.reset(token)


def _load_pdf(job: FileJob, data: bytes) -> list[LoadedItem]:
    from pypdf.errors import FileNotDecryptedError, LimitReachedError, PdfReadError

    path, limits = job.path, job.limits
    source, name = job.source, job.name
    try:
        reader = _open(path, data)
        pages = reader.pages
        page_count = len(pages)
        budget = _ContentBudget(path, limits)
        texts: list[str] = []
        failed: list[int] = []
        failure: Exception | None = None
        total = 0
        for number, page in enumerate(pages, start=1):
            job.check_time()
            budget.charge(page, number)
            try:
                text = (page.extract_text() or "").strip()
            except (LimitReachedError, FileNotDecryptedError, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - a broken font or operator on one page
                # should not cost the other pages; the failure is recorded in metadata.
                logger.debug("page %d of %s: text extraction failed", number, name)
                job.item_error(
                    f"page {number}",
                    f"text extraction failed ({type(exc).__name__}); the other pages are kept",
                    "invalid",
                )
                failed.append(number)
                failure = exc
                continue
            total += len(text)
            if total > limits.max_text_chars:
                raise LoaderError(
                    f"{name}: extracted text exceeds the {limits.max_text_chars}-character limit "
                    f"(at page {number} of {page_count})",
                    kind="too_large",
                    source=source,
                )
            if text:
                texts.append(text)
        title = None
        try:
            info = reader.metadata
            title = info.title if info is not None else None
        except Exception:  # noqa: BLE001 - a broken Info dict should not cost the text
            logger.debug("unreadable PDF metadata in %s", name)
    except LimitReachedError as exc:
        raise LoaderError(
            f"{name}: PDF exceeds pypdf's safety limits ({exc})", kind="too_large", source=source
        ) from exc
    except FileNotDecryptedError as exc:
        raise LoaderError(
            f"{name}: PDF is password-protected; decrypt it first", kind="unreadable", source=source
        ) from exc
    except PdfReadError as exc:
        raise LoaderError(
            f"{name}: not a readable PDF ({exc})", kind="invalid", source=source
        ) from exc
    text = "\n\n".join(texts)
    if not text and failure is not None:
        raise LoaderError(
            f"{name}: text extraction failed on every page ({type(failure).__name__})",
            kind="invalid",
            source=source,
        ) from failure
    if not text:
        raise LoaderError(
            f"{name}: PDF has no extractable text (scanned pages need OCR first)",
            kind="empty",
            source=source,
        )
    metadata = job.metadata()
    metadata["page_count"] = page_count
    if failed:
        metadata["failed_pages"] = failed
    if isinstance(title, str) and title.strip():
        metadata["title"] = title.strip()
    return [LoadedItem(text=text, kind="document", source=source, metadata=metadata)]
