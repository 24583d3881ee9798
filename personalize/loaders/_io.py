"""Shared plumbing: bounded file reads, text decoding, per-input caps."""

from __future__ import annotations

import codecs
import errno
import os
import stat
from pathlib import Path
from typing import Any

from personalize.types import LoadedItem

from ._errors import LoaderError
from ._limits import LoaderLimits

__all__ = [
    "ItemCollector",
    "decode_text",
    "display_name",
    "check_file",
    "file_metadata",
    "file_type",
    "has_bom",
    "probe_is_binary",
    "read_file_bytes",
]

# Share of undecodable bytes (plus NULs) above which "text" is really binary. Below it,
# a stray Latin-1 byte in an otherwise UTF-8 note should not cost the user the file.
_MAX_BAD_CHAR_RATIO = 0.01
_PROBE_BYTES = 8 * 1024
_GROWTH_CHUNK = 1024 * 1024

# UTF-32 first: its little-endian BOM starts with the UTF-16 one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def display_name(source: str | os.PathLike[str]) -> str:
    """The name an error message shows: the file name, never the directory or content."""
    name = Path(source).name
    return name or str(source)


def file_type(path: Path) -> str:
    return path.suffix.lower().lstrip(".") or "text"


def file_metadata(path: Path) -> dict[str, Any]:
    return {"file_name": path.name, "file_type": file_type(path)}


def check_file(path: Path, limits: LoaderLimits) -> int:
    """Stat ``path`` and enforce the size cap before anything is read; returns the size."""
    source, name = str(path), display_name(path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise LoaderError(f"{name}: no such file", kind="missing", source=source) from exc
    except PermissionError as exc:
        raise LoaderError(f"{name}: permission denied", kind="unreadable", source=source) from exc
    except OSError as exc:
        raise LoaderError(
            f"{name}: cannot be read ({exc.strerror or exc})", kind="unreadable", source=source
        ) from exc
    except ValueError as exc:  # e.g. an embedded NUL in the path
        raise LoaderError(f"{name}: invalid path ({exc})", kind="invalid", source=source) from exc
    if stat.S_ISDIR(st.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise LoaderError(
                f"{name}: directory cannot be listed (permission denied)",
                kind="unreadable",
                source=source,
            )
        raise LoaderError(
            f"{name}: is a directory (walk it with iter_input_files)",
            kind="unsupported",
            source=source,
        )
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO or device would block or read forever.
        raise LoaderError(f"{name}: not a regular file", kind="unreadable", source=source)
    if st.st_size > limits.max_file_bytes:
        raise LoaderError(
            f"{name}: {st.st_size} bytes exceeds the {limits.max_file_bytes}-byte limit",
            kind="too_large",
            source=source,
        )
    return st.st_size


def read_file_bytes(path: Path, limits: LoaderLimits) -> bytes:
    """Read a whole file, never more than ``limits.max_file_bytes``."""
    size = check_file(path, limits)
    source, name = str(path), display_name(path)
    cap = limits.max_file_bytes
    try:
        with open(path, "rb") as fh:
            # read(n) allocates n bytes up front, so ask for the stat size (+1 to notice
            # growth), not for the cap; a file that grew since the stat is read on in
            # chunks, never past the cap.
            data = fh.read(size + 1)
            if len(data) > size:
                parts = [data]
                total = len(data)
                while total <= cap:
                    chunk = fh.read(min(_GROWTH_CHUNK, cap + 1 - total))
                    if not chunk:
                        break
                    parts.append(chunk)
                    total += len(chunk)
                data = b"".join(parts)
    except PermissionError as exc:
        raise LoaderError(f"{name}: permission denied", kind="unreadable", source=source) from exc
    except FileNotFoundError as exc:  # deleted between stat and open
        raise LoaderError(f"{name}: no such file", kind="missing", source=source) from exc
    except OSError as exc:
        kind = "unreadable" if exc.errno != errno.ENOENT else "missing"
        raise LoaderError(
            f"{name}: cannot be read ({exc.strerror or exc})", kind=kind, source=source
        ) from exc
    if len(data) > limits.max_file_bytes:
        raise LoaderError(
            f"{name}: exceeds the {limits.max_file_bytes}-byte limit",
            kind="too_large",
            source=source,
        )
    return data


def _bad_ratio_ok(text: str, bad: int) -> bool:
    return bad == 0 or (len(text) > 0 and bad / len(text) < _MAX_BAD_CHAR_RATIO)


def decode_text(data: bytes, *, source: str) -> str:
    """Decode file bytes to text, or raise ``LoaderError(kind="binary")``.

    Order: a byte-order mark decides (UTF-8/16/32); else strict UTF-8; else UTF-8 with
    replacement characters, accepted only when under 1% of the text was replaced.
    NUL characters are dropped when rare (NUL-padded logs after a crash) and mark the
    file binary when common.
    """
    name = display_name(source)
    text: str | None = None
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
    if text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("utf-8", errors="replace")
            if not _bad_ratio_ok(text, text.count("\ufffd") + text.count("\x00")):
                raise LoaderError(
                    f"{name}: not text (undecodable bytes; is it a binary file?)",
                    kind="binary",
                    source=source,
                ) from None
    nuls = text.count("\x00")
    if nuls:
        if not _bad_ratio_ok(text, nuls):
            raise LoaderError(
                f"{name}: not text (contains NUL bytes; is it a binary file?)",
                kind="binary",
                source=source,
            )
        text = text.replace("\x00", "")
    return text


def has_bom(data: bytes) -> bool:
    """Whether ``data`` starts with a Unicode byte-order mark."""
    return any(data.startswith(bom) for bom, _ in _BOMS)


def probe_is_binary(data: bytes) -> bool:
    """Whether the first 8 KiB look binary: any NUL byte, or bytes that are not UTF-8.

    Used for files whose suffix says nothing, so the bar is stricter than for ``.txt``.
    """
    head = data[:_PROBE_BYTES]
    if has_bom(head):
        return False
    if b"\x00" in head:
        return True
    try:
        # final=False: the probe may cut a multi-byte character in half.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return True
    return False


class ItemCollector:
    """Gathers one input's items while enforcing the per-input caps as it goes.

    Checking while parsing (not after) is what stops a hostile input early.
    """

    def __init__(self, source: str, limits: LoaderLimits) -> None:
        self.source = source
        self.limits = limits
        self.items: list[LoadedItem] = []
        self.chars = 0

    def add(self, item: LoadedItem) -> None:
        name = display_name(self.source)
        if len(self.items) >= self.limits.max_messages:
            raise LoaderError(
                f"{name}: more than {self.limits.max_messages} items",
                kind="too_large",
                source=self.source,
            )
        self.add_chars(len(item.text))
        self.items.append(item)

    def add_chars(self, count: int) -> None:
        self.chars += count
        if self.chars > self.limits.max_text_chars:
            raise LoaderError(
                f"{display_name(self.source)}: extracted text exceeds the "
                f"{self.limits.max_text_chars}-character limit",
                kind="too_large",
                source=self.source,
            )
