"""HTML → readable text, streamed through libxml2's HTML parser (lxml) with a target.

No tree is built: the parser calls ``start``/``end``/``data`` as it reads and text is
collected as it comes, so time and memory are linear in the input however deeply (or
never) its tags are closed. (A tree builder, BeautifulSoup with ``html.parser``, spent
quadratic time on 40,000 nested ``<div>``s and 560 MB on 300,000 unclosed ``<b>``s;
the standard library's ``HTMLParser`` alone is quadratic on ``"<a " * n``.) lxml comes
with python-docx and python-pptx.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable

from personalize.types import LoadedItem

from ._errors import LoaderError
from ._io import FileJob, decode_lenient, has_bom

__all__ = ["html_to_text", "load_html_file"]

# Not content: code, styling, navigation chrome, and <head> (its <title> is kept
# separately as metadata).
_DROP_TAGS = frozenset({"script", "style", "nav", "noscript", "template", "head", "svg"})
# Elements that end a line when rendered; without a break after them, adjacent
# blocks would run together ("TitleFirst paragraph").
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption",
    "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
    "main", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
})  # fmt: skip
_SPACES = re.compile(r"[ \t\f\v\r\u00a0]+")
_MAX_TITLE_CHARS = 1000
# The time budget is checked once per this many parser events.
_CHECK_EVERY = 4096
_DECLARED = re.compile(
    rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]{1,40})""", re.IGNORECASE
)
_DECLARED_WINDOW = 4096


class _TextTarget:
    """lxml parser target: collects text outside dropped elements, and the title.

    libxml2 closes implied elements itself, so every ``start`` gets its ``end`` and a
    plain counter knows whether the parser is inside a dropped element.
    """

    def __init__(self, check_time: Callable[[], None] | None) -> None:
        self.pieces: list[str] = []
        self.title: list[str] = []
        self.title_chars = 0
        self.in_title = False
        self.skip = 0
        self.events = 0
        self.check_time = check_time

    def _tick(self) -> None:
        self.events += 1
        if self.check_time is not None and self.events % _CHECK_EVERY == 0:
            self.check_time()

    def start(self, tag: object, attrib: object) -> None:
        self._tick()
        if not isinstance(tag, str):
            return
        if tag in _DROP_TAGS:
            self.skip += 1
        elif tag == "title":
            self.in_title = True
        elif tag == "br" or tag in _BLOCK_TAGS:
            self.pieces.append("\n")

    def end(self, tag: object) -> None:
        self._tick()
        if not isinstance(tag, str):
            return
        if tag in _DROP_TAGS:
            self.skip = max(0, self.skip - 1)
        elif tag == "title":
            self.in_title = False
        elif tag in _BLOCK_TAGS:
            self.pieces.append("\n")

    def data(self, data: str) -> None:
        self._tick()
        if self.in_title:
            if self.title_chars < _MAX_TITLE_CHARS:
                self.title.append(data)
                self.title_chars += len(data)
        elif not self.skip:
            self.pieces.append(data)

    def comment(self, text: str) -> None:
        self._tick()

    def close(self) -> None:
        return None


def _declared_encoding(data: bytes) -> str | None:
    match = _DECLARED.search(data[:_DECLARED_WINDOW])
    if match is None:
        return None
    try:
        name = codecs.lookup(match.group(1).decode("ascii")).name
    except (LookupError, UnicodeDecodeError):
        return None
    # WHATWG: pages labelled Latin-1 or ASCII are windows-1252 (curly quotes, euro sign).
    return "cp1252" if name in ("latin-1", "iso8859-1", "ascii") else name


def _decode_html(data: bytes) -> str:
    if not has_bom(data):
        declared = _declared_encoding(data)
        if declared is not None and declared not in ("utf-16", "utf-32"):
            return data.decode(declared, errors="replace")
    # Lenient: NULs were checked by the caller, and markup in an undetectable encoding
    # still has readable ASCII text.
    return decode_lenient(data)


def html_to_text(
    markup: str | bytes,
    *,
    check_time: Callable[[], None] | None = None,
) -> tuple[str, str | None]:
    """Extract ``(text, title)`` from HTML in one linear pass (no tree is built).

    Bytes are decoded from a byte-order mark, a ``<meta charset>`` declaration, UTF-8,
    or a detected legacy encoding, in that order. ``check_time`` is called every few
    thousand parser events and may raise to stop a file that runs over its budget.
    """
    from lxml import etree

    text = markup if isinstance(markup, str) else _decode_html(markup)
    if not text.strip():
        return "", None
    target = _TextTarget(check_time)
    # huge_tree lifts libxml2's depth and text-node caps, which would otherwise cut a
    # document short silently; time and size are bounded by the loader's own limits.
    parser = etree.HTMLParser(
        target=target,
        recover=True,
        huge_tree=True,
        no_network=True,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        parser.feed(text)
        parser.close()
    except etree.ParserError:  # nothing parsable at all (only a stray "<!")
        pass
    title = " ".join("".join(target.title).split())[:_MAX_TITLE_CHARS] or None
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(target.pieces).split("\n"))
    return "\n".join(line for line in lines if line), title


def load_html_file(job: FileJob, data: bytes) -> list[LoadedItem]:
    """An ``.html``/``.htm`` file as one document with its title in metadata."""
    # Only NULs mark binary here: legacy-charset HTML (Latin-1, Shift-JIS) is not UTF-8
    # but is still HTML.
    if b"\x00" in data[:8192] and not has_bom(data):
        raise LoaderError(
            f"{job.name}: not HTML (binary content)", kind="binary", source=job.source
        )
    text, title = html_to_text(data, check_time=job.check_time)
    if len(text) > job.limits.max_text_chars:
        raise LoaderError(
            f"{job.name}: extracted text exceeds the {job.limits.max_text_chars}-character limit",
            kind="too_large",
            source=job.source,
        )
    if not text.strip():
        raise LoaderError(f"{job.name}: page has no text", kind="empty", source=job.source)
    metadata = job.metadata()
    if title:
        metadata["title"] = title
    return [LoadedItem(text=text, kind="document", source=job.source, metadata=metadata)]
