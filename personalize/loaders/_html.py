"""HTML → readable text with BeautifulSoup."""

from __future__ import annotations

import re
from pathlib import Path

from personalize.types import LoadedItem

from ._errors import LoaderError
from ._io import display_name, file_metadata, has_bom
from ._limits import LoaderLimits

__all__ = ["html_to_text", "load_html_file"]

# Not content: code, styling, navigation chrome, and <head> (its <title> is kept
# separately as metadata).
_DROP_TAGS = ("script", "style", "nav", "noscript", "template", "head", "svg")
# Elements that end a line when rendered; without a break after them, adjacent
# blocks would run together ("TitleFirst paragraph").
_BLOCK_TAGS = (
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption",
    "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
    "main", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
)  # fmt: skip
_SPACES = re.compile(r"[ \t\f\v\r\u00a0]+")


def html_to_text(markup: str | bytes) -> tuple[str, str | None]:
    """Extract ``(text, title)`` from HTML.

    Bytes are passed through so BeautifulSoup can honour a ``<meta charset>``.
    """
    from bs4 import BeautifulSoup

    # html.parser: in the standard library, so results do not depend on lxml being present.
    soup = BeautifulSoup(markup, "html.parser")
    title = None
    if soup.title is not None:
        title = " ".join(soup.title.get_text(" ").split()) or None
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for block in soup.find_all(_BLOCK_TAGS):
        block.insert_before("\n")
        block.insert_after("\n")
    lines = (_SPACES.sub(" ", line).strip() for line in soup.get_text().split("\n"))
    return "\n".join(line for line in lines if line), title


def load_html_file(path: Path, data: bytes, limits: LoaderLimits) -> list[LoadedItem]:
    """An ``.html``/``.htm`` file as one document with its title in metadata."""
    source, name = str(path), display_name(path)
    # Only NULs mark binary here: legacy-charset HTML (Latin-1, Shift-JIS) is not UTF-8
    # but is still HTML, and BeautifulSoup detects its encoding.
    if b"\x00" in data[:8192] and not has_bom(data):
        raise LoaderError(f"{name}: not HTML (binary content)", kind="binary", source=source)
    text, title = html_to_text(data)
    if len(text) > limits.max_text_chars:
        raise LoaderError(
            f"{name}: extracted text exceeds the {limits.max_text_chars}-character limit",
            kind="too_large",
            source=source,
        )
    if not text.strip():
        raise LoaderError(f"{name}: page has no text", kind="empty", source=source)
    metadata = file_metadata(path)
    if title:
        metadata["title"] = title
    return [LoadedItem(text=text, kind="document", source=source, metadata=metadata)]
