"""Word (``.docx``) and PowerPoint (``.pptx``) files, read with python-docx and python-pptx."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any

from personalize.types import LoadedItem

from ._errors import LoaderError
from ._fields import clean_text
from ._io import FileJob

__all__ = ["load_docx_file", "load_pptx_file"]

# Office files are zip archives of XML, which is far larger than the text it holds.
# Members may inflate to the file size limit plus this many bytes per allowed character;
# a zip bomb is refused from its directory, before anything is inflated.
_XML_BYTES_PER_CHAR = 10
# Tables inside table cells are followed this deep; deeper ones contribute their
# paragraphs' text only.
_MAX_TABLE_NESTING = 8


def _check_archive(job: FileJob, data: bytes, kind: str) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise LoaderError(
            f"{job.name}: not a readable {kind} file (not a zip archive)",
            kind="invalid",
            source=job.source,
        ) from exc
    cap = job.limits.max_file_bytes + _XML_BYTES_PER_CHAR * job.limits.max_text_chars
    if inflated > cap:
        raise LoaderError(
            f"{job.name}: archive inflates to {inflated} bytes, beyond what "
            f"{job.limits.max_text_chars} characters of text could need (a zip bomb?)",
            kind="too_large",
            source=job.source,
        )


def _open_package(job: FileJob, data: bytes, kind: str, opener: Any, unreadable: type[Exception]) -> Any:
    """``opener(file)`` on ``data`` after the zip-bomb check; a package it cannot read is a ``LoaderError``."""
    _check_archive(job, data, kind)
    try:
        return opener(io.BytesIO(data))
    except (unreadable, KeyError) as exc:
        raise LoaderError(
            f"{job.name}: not a readable {kind} file ({type(exc).__name__})",
            kind="invalid",
            source=job.source,
        ) from exc


def _finish(
    job: FileJob, blocks: list[str], metadata: dict[str, Any], what: str
) -> list[LoadedItem]:
    text = clean_text("\n\n".join(b for b in blocks if b.strip())).strip()
    if len(text) > job.limits.max_text_chars:
        raise LoaderError(
            f"{job.name}: extracted text exceeds the {job.limits.max_text_chars}-character limit",
            kind="too_large",
            source=job.source,
        )
    if not text:
        raise LoaderError(f"{job.name}: {what} has no text", kind="empty", source=job.source)
    return [LoadedItem(text=text, kind="document", source=job.source, metadata=metadata)]


def _title(properties: Any) -> str | None:
    title = getattr(properties, "title", None)
    return title.strip() if isinstance(title, str) and title.strip() else None


# -- Word ---------------------------------------------------------------------------------


def _docx_cell(cell: Any, depth: int) -> str:
    if depth >= _MAX_TABLE_NESTING:
        return cell.text.strip()
    return "\n".join(t for t in _docx_blocks(cell.iter_inner_content(), depth + 1) if t)


def _docx_table(table: Any, depth: int) -> str:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            # A merged cell is returned once per grid column it spans: keep it once.
            if previous is not None and cell._tc is previous:
                continue
            previous = cell._tc
            cells.append(" ".join(_docx_cell(cell, depth).split("\n")))
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _docx_blocks(content: Iterator[Any], depth: int) -> Iterator[str]:
    from docx.table import Table

    for block in content:
        if isinstance(block, Table):
            yield _docx_table(block, depth)
        else:
            yield block.text.strip()


def load_docx_file(job: FileJob, data: bytes) -> list[LoadedItem]:
    """A Word ``.docx`` file as one document: its paragraphs and tables in reading order.

    Table rows are rendered ``"cell | cell"``; the core property title goes to metadata.
    """
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    document = _open_package(job, data, "Word", docx.Document, PackageNotFoundError)
    blocks: list[str] = []
    for n, text in enumerate(_docx_blocks(document.iter_inner_content(), 0)):
        if n % 256 == 0:
            job.check_time()
        blocks.append(text)
    metadata = job.metadata()
    title = _title(document.core_properties)
    if title:
        metadata["title"] = title
    return _finish(job, blocks, metadata, "document")


# -- PowerPoint ---------------------------------------------------------------------------


def _pptx_shapes(shapes: Any) -> Iterator[str]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _pptx_shapes(shape.shapes)
        elif shape.has_text_frame:
            yield shape.text_frame.text.strip()
        elif getattr(shape, "has_table", False) and shape.has_table:
            rows = []
            for row in shape.table.rows:
                cells = [" ".join(cell.text.split()) for cell in row.cells]
                if any(cells):
                    rows.append(" | ".join(cells))
            yield "\n".join(rows)


def _slide_text(slide: Any) -> str:
    title_shape = slide.shapes.title
    title = title_shape.text_frame.text.strip() if title_shape is not None else ""
    title_id = title_shape.shape_id if title_shape is not None else None
    parts = [title] if title else []
    # Shapes are fresh proxies on every access: compare ids, not objects.
    for text in _pptx_shapes(shape for shape in slide.shapes if shape.shape_id != title_id):
        if text:
            parts.append(text)
    if slide.has_notes_slide:
        frame = slide.notes_slide.notes_text_frame
        notes = frame.text.strip() if frame is not None else ""
        if notes:
            parts.append(f"Notes: {notes}")
    return "\n".join(parts)


def load_pptx_file(job: FileJob, data: bytes) -> list[LoadedItem]:
    """A PowerPoint ``.pptx`` file as one document: per slide its title, text frames,
    tables and speaker notes, slides separated by a blank line.

    ``slide_count`` and the core property title go to metadata.
    """
    import pptx
    from pptx.exc import PackageNotFoundError

    presentation = _open_package(job, data, "PowerPoint", pptx.Presentation, PackageNotFoundError)
    blocks: list[str] = []
    count = 0
    for count, slide in enumerate(presentation.slides, start=1):
        job.check_time()
        blocks.append(_slide_text(slide))
    metadata = job.metadata()
    metadata["slide_count"] = count
    title = _title(presentation.core_properties)
    if title:
        metadata["title"] = title
    return _finish(job, blocks, metadata, "presentation")
