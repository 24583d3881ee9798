"""Shared plumbing: race-free bounded file reads, text decoding, per-input caps and budgets."""

from __future__ import annotations

import codecs
import errno
import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

from personalize.types import FileError, LoadedItem

from ._errors import LoaderError, LoaderErrorKind
from ._limits import LoaderLimits

__all__ = [
    "FileJob",
    "ItemCollector",
    "WalkedPath",
    "decode_charset",
    "decode_lenient",
    "decode_text",
    "display_name",
    "file_metadata",
    "file_type",
    "has_bom",
    "open_input",
    "probe_is_binary",
    "read_file_bytes",
]

logger = logging.getLogger(__name__)

# Share of undecodable bytes (plus NULs) above which "text" is really binary. Below it,
# a stray byte in an otherwise UTF-8 note should not cost the user the file.
_MAX_BAD_CHAR_RATIO = 0.01
_PROBE_BYTES = 8 * 1024
_GROWTH_CHUNK = 1024 * 1024
# Control characters that no text encoding guess should produce in real text; ESC (ANSI
# colours in logs), tab, newlines and form feed are ordinary.
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f-\x9f]")
# charset-normalizer cannot tell windows-1252 from its Baltic and Central-European
# siblings on short Western text (French "très" comes back as cp1257 "trčs"). Its
# candidates are scored by "chaos"; windows-1252 wins when it is this close to the best.
_CP1252_TIE = 0.1

# UTF-32 first: its little-endian BOM starts with the UTF-16 one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
# O_BINARY: Windows would otherwise translate line endings.
_READ_FLAGS = os.O_RDONLY | _O_CLOEXEC | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
_DIR_FLAGS = os.O_RDONLY | _O_CLOEXEC | _O_DIRECTORY | _O_NOFOLLOW
#: Whether files can be opened relative to a folder handle without following links
#: (POSIX). Elsewhere (Windows) the walk checks, then opens: a narrow race remains.
SECURE_OPEN = bool(
    _O_NOFOLLOW
    and _O_DIRECTORY
    and os.open in os.supports_dir_fd
    and os.scandir in os.supports_fd
    and os.stat in os.supports_dir_fd
)


def display_name(source: str | os.PathLike[str]) -> str:
    """The name an error message shows: the file name, never the directory or content."""
    name = Path(source).name
    return name or str(source)


def file_type(path: Path) -> str:
    return path.suffix.lower().lstrip(".") or "text"


def file_metadata(path: Path) -> dict[str, Any]:
    return {"file_name": path.name, "file_type": file_type(path)}


class WalkedPath(type(Path())):  # type: ignore[misc]
    """A file found by walking a folder: opened relative to that folder, never via a link.

    It is an ordinary :class:`~pathlib.Path` to callers. ``load_path`` opens it one
    component at a time from the walked root with ``O_NOFOLLOW``, so a folder swapped
    for a symlink after the walk saw it is refused at the moment of reading, not
    followed. A path the walk refused (a symlink, a special file, a folder nested too
    deeply) carries that refusal, and ``load_path`` reports it as the file's error.
    Paths derived from it (``.parent``, ``/``) are plain paths again.
    """

    walk_root: Path | None = None
    walk_parts: tuple[str, ...] = ()
    refusal: tuple[str, LoaderErrorKind] | None = None

    @classmethod
    def found(
        cls,
        root: Path,
        parts: tuple[str, ...],
        refusal: tuple[str, LoaderErrorKind] | None = None,
    ) -> WalkedPath:
        path = cls(root, *parts)
        path.walk_root = root
        path.walk_parts = parts
        path.refusal = refusal
        return path

    def __reduce__(self):  # type: ignore[override]
        # Across a process boundary it is a plain path (the folder handle does not travel).
        return (Path, (str(self),))


class FileJob:
    """One file being loaded: its path, limits, time budget and per-item errors.

    Loaders that take several items from one file (messages of a mailbox, turns of a
    chat export, rows of a CSV, pages of a PDF) report an item they must drop with
    :meth:`item_error` instead of skipping it silently; ``load_path`` hands those to
    its caller.
    """

    def __init__(self, path: Path, limits: LoaderLimits) -> None:
        self.path = path
        self.limits = limits
        self.source = str(path)
        self.name = display_name(path)
        self.deadline = time.monotonic() + limits.max_parse_seconds
        self.errors: list[FileError] = []

    def metadata(self) -> dict[str, Any]:
        return file_metadata(self.path)

    def check_time(self) -> None:
        """Raise ``LoaderError(kind="timeout")`` once the file's time budget is spent."""
        if time.monotonic() > self.deadline:
            raise LoaderError(
                f"{self.name}: parsing took longer than {self.limits.max_parse_seconds:g} s "
                "(LoaderLimits.max_parse_seconds); the file is too complex to load",
                kind="timeout",
                source=self.source,
            )

    def item_error(self, where: str, message: str, kind: LoaderErrorKind) -> None:
        """Record one dropped item; ``where`` names it inside the file (``"3"``, ``"page 2"``)."""
        message = message.removeprefix(f"{where}: ")
        self.errors.append(
            FileError(
                source=f"{self.source}#{where}", error=f"{self.name}#{where}: {message}", kind=kind
            )
        )


def _os_error(exc: OSError, path: Path, *, walked: bool) -> LoaderError:
    source, name = str(path), display_name(path)
    if isinstance(exc, PermissionError):
        return LoaderError(f"{name}: permission denied", kind="unreadable", source=source)
    if exc.errno == errno.ELOOP:
        if walked:
            return LoaderError(
                f"{name}: is a symbolic link; links inside a walked folder are not followed",
                kind="unsupported",
                source=source,
            )
        return LoaderError(f"{name}: symbolic link loop", kind="unreadable", source=source)
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return LoaderError(f"{name}: no such file", kind="missing", source=source)
    return LoaderError(
        f"{name}: cannot be read ({exc.strerror or exc})", kind="unreadable", source=source
    )


def _open_beneath(path: WalkedPath) -> int:
    """Open a walked file component by component from its root, following no link."""
    assert path.walk_root is not None
    fd = os.open(path.walk_root, os.O_RDONLY | _O_CLOEXEC | _O_DIRECTORY)
    try:
        for part in path.walk_parts[:-1]:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except NotADirectoryError:
                # O_DIRECTORY | O_NOFOLLOW on a symlink fails with ENOTDIR: a folder of
                # the walk was replaced (by a link, say) after the walk listed it.
                if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise LoaderError(
                        f"{display_name(path)}: a folder above it was replaced by a symbolic "
                        "link during the walk; not followed",
                        kind="unsupported",
                        source=str(path),
                    ) from None
                raise
            os.close(fd)
            fd = child
        return os.open(path.walk_parts[-1], _READ_FLAGS | _O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def open_input(path: Path) -> int:
    """A read-only descriptor for ``path``; walked paths are opened without following links.

    A path given directly is opened as given (a link the caller named is followed).

    Raises:
        LoaderError: missing, unreadable, refused by the walk, or a link in a walked folder.
    """
    walked = isinstance(path, WalkedPath) and path.walk_root is not None
    if isinstance(path, WalkedPath) and path.refusal is not None:
        message, kind = path.refusal
        raise LoaderError(f"{display_name(path)}: {message}", kind=kind, source=str(path))
    try:
        if walked and SECURE_OPEN:
            return _open_beneath(path)  # type: ignore[arg-type]
        if walked and os.path.islink(path):  # no O_NOFOLLOW here: check, then open
            raise OSError(errno.ELOOP, "symbolic link")
        return os.open(path, _READ_FLAGS)
    except LoaderError:
        raise
    except OSError as exc:
        raise _os_error(exc, path, walked=walked) from exc
    except ValueError as exc:  # e.g. an embedded NUL in the path
        raise LoaderError(
            f"{display_name(path)}: invalid path ({exc})", kind="invalid", source=str(path)
        ) from exc


def _check_open_file(fd: int, path: Path, limits: LoaderLimits) -> int:
    """``fstat`` the open file and enforce type and size; returns its size."""
    source, name = str(path), display_name(path)
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        raise LoaderError(
            f"{name}: is a directory (walk it with iter_input_files)",
            kind="unsupported",
            source=source,
        )
    if not stat.S_ISREG(st.st_mode):
        # Reading a FIFO or device would block or read forever.
        raise LoaderError(f"{name}: not a regular file", kind="unreadable", source=source)
    if st.st_size > limits.max_file_bytes:
        raise LoaderError(
            f"{name}: {st.st_size} bytes exceeds the {limits.max_file_bytes}-byte limit",
            kind="too_large",
            source=source,
        )
    return st.st_size


def read_file_bytes(path: Path, limits: LoaderLimits) -> bytes:
    """Read a whole file, never more than ``limits.max_file_bytes``.

    The size and type checks are made on the open descriptor (``fstat``), so what is
    checked is what is read; nothing is read from a file over the limit.
    """
    source, name = str(path), display_name(path)
    cap = limits.max_file_bytes
    fd = open_input(path)
    try:
        size = _check_open_file(fd, path, limits)
        # Ask for the stat size (+1 to notice growth), not for the cap; a file that
        # grew since the stat is read on in chunks, never past the cap.
        parts: list[bytes] = []
        total = 0
        target = size + 1
        while total <= cap:
            want = target - total if total < target else _GROWTH_CHUNK
            chunk = os.read(fd, min(want, cap + 1 - total))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise _os_error(exc, path, walked=False) from exc
    finally:
        os.close(fd)
    if total > cap:
        raise LoaderError(f"{name}: exceeds the {cap}-byte limit", kind="too_large", source=source)
    return b"".join(parts)


def _bad_ratio_ok(text: str, bad: int) -> bool:
    return bad == 0 or (len(text) > 0 and bad / len(text) < _MAX_BAD_CHAR_RATIO)


def _legacy_text(data: bytes) -> str | None:
    """``data`` decoded from the legacy encoding charset-normalizer finds, or ``None``.

    ``None`` when no encoding yields plausible text (binary data), judged by
    charset-normalizer's "chaos" score and then by the share of control characters.
    """
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    encoding = best.encoding
    for match in matches:
        if "cp1252" in match.could_be_from_charset and match.chaos <= best.chaos + _CP1252_TIE:
            encoding = "cp1252"
            break
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        text = str(best)
    if not text or len(_CONTROL.findall(text)) / len(text) >= _MAX_BAD_CHAR_RATIO:
        return None
    return text


def decode_text(data: bytes, *, source: str) -> str:
    """Decode file bytes to text, or raise ``LoaderError(kind="binary")``.

    Order: a byte-order mark decides (UTF-8/16/32); else strict UTF-8; else, for text
    that is UTF-8 apart from a few stray bytes (under 1%), UTF-8 with replacement
    characters; else the legacy encoding charset-normalizer detects (Latin-1/
    windows-1252 preferred on a near tie, then cp1251, Shift-JIS, ...), accepted only
    when the result has almost no control characters. NUL characters are dropped when
    rare (NUL-padded logs after a crash) and mark the file binary when common.
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
            text = _decode_non_utf8(data, name=name, source=source)
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


def _decode_non_utf8(data: bytes, *, name: str, source: str) -> str:
    binary = LoaderError(
        f"{name}: not text (undecodable bytes; is it a binary file?)",
        kind="binary",
        source=source,
    )
    if data.count(b"\x00") >= _MAX_BAD_CHAR_RATIO * len(data):
        raise binary
    replaced = data.decode("utf-8", errors="replace")
    bad = replaced.count("\ufffd")
    # Real multi-byte characters decoded: it is UTF-8 with a few damaged bytes, and a
    # single-byte guess would turn every one of them into mojibake.
    has_utf8 = any(ord(c) > 0x7F and c != "\ufffd" for c in replaced)
    if has_utf8 and _bad_ratio_ok(replaced, bad):
        return replaced
    legacy = _legacy_text(data)
    if legacy is not None:
        logger.debug("%s: decoded as a legacy (non-UTF-8) encoding", name)
        return legacy
    if _bad_ratio_ok(replaced, bad):
        return replaced
    raise binary


def decode_lenient(data: bytes) -> str:
    """Decode bytes that must become text whatever they hold (an e-mail part whose
    declared charset is wrong or unusable): BOM, UTF-8, a detected legacy encoding,
    else UTF-8 with replacement characters. Never raises."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                break
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    legacy = _legacy_text(data) if b"\x00" not in data else None
    return legacy if legacy is not None else data.decode("utf-8", errors="replace")


def decode_charset(data: bytes, charset: str | None) -> str:
    """Decode with a declared charset, falling back to :func:`decode_lenient` when the
    name is unknown, not a text encoding, or does not fit the bytes (``charset=idna``)."""
    if charset:
        try:
            if codecs.lookup(charset)._is_text_encoding:
                try:
                    return data.decode(charset)
                except UnicodeDecodeError:
                    # The declared charset with a few damaged bytes still beats a guess.
                    text = data.decode(charset, errors="replace")
                    if _bad_ratio_ok(text, text.count("\ufffd")):
                        return text
        except (LookupError, UnicodeError, ValueError):
            pass
    return decode_lenient(data)


def has_bom(data: bytes) -> bool:
    """Whether ``data`` starts with a Unicode byte-order mark."""
    return any(data.startswith(bom) for bom, _ in _BOMS)


def probe_is_binary(data: bytes) -> bool:
    """Whether the first 8 KiB look binary: any NUL byte, or bytes that are neither
    UTF-8 nor a legacy text encoding.

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
        return _legacy_text(head) is None
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
