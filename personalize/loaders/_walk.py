"""Walking input folders through folder handles, following no link."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ._errors import LoaderErrorKind
from ._io import _DIR_FLAGS, _O_CLOEXEC, _O_DIRECTORY, SECURE_OPEN, WalkedPath

__all__ = ["MAX_WALK_DEPTH", "iter_input_files"]

logger = logging.getLogger(__name__)

#: Folders nested deeper than this below a walked folder are reported, not walked: each
#: level holds one open folder handle while its subfolders are walked.
MAX_WALK_DEPTH = 64

Refusal = tuple[str, LoaderErrorKind]

_LINK: Refusal = (
    "is a symbolic link; links inside a walked folder are not followed",
    "unsupported",
)
_SPECIAL: Refusal = ("not a regular file (a FIFO, socket or device); not read", "unreadable")
_SWAPPED: Refusal = (
    "was replaced by a symbolic link or file during the walk; not followed",
    "unsupported",
)
_TOO_DEEP: Refusal = (
    f"folders nested deeper than {MAX_WALK_DEPTH} levels; not walked",
    "too_complex",
)


def _listing_refusal(exc: OSError) -> Refusal:
    if isinstance(exc, PermissionError):
        return ("folder cannot be listed (permission denied)", "unreadable")
    return (f"folder cannot be listed ({exc.strerror or exc})", "unreadable")


def _visible_entries(folder: int | Path) -> list[os.DirEntry[str]]:
    """The folder's entries by name, hidden ones (VCS data, editor swap files, OS metadata) left out."""
    with os.scandir(folder) as it:  # a path, or a directory fd
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def _walk_fd(fd: int, root: Path, parts: tuple[str, ...]) -> Iterator[Path]:
    try:
        entries = _visible_entries(fd)
    except OSError as exc:
        yield WalkedPath.found(root, parts, _listing_refusal(exc))
        return
    for entry in entries:
        here = (*parts, entry.name)
        try:
            if entry.is_symlink():
                yield WalkedPath.found(root, here, _LINK)
            elif entry.is_dir(follow_symlinks=False):
                if len(here) > MAX_WALK_DEPTH:
                    yield WalkedPath.found(root, here, _TOO_DEEP)
                    continue
                try:
                    # The check and the open are one operation: O_NOFOLLOW | O_DIRECTORY
                    # fails on whatever replaced the folder since it was listed.
                    child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                        yield WalkedPath.found(root, here, _SWAPPED)
                    elif exc.errno != errno.ENOENT:  # gone since listed: nothing to load
                        yield WalkedPath.found(root, here, _listing_refusal(exc))
                    continue
                try:
                    yield from _walk_fd(child, root, here)
                finally:
                    os.close(child)
            elif entry.is_file(follow_symlinks=False):
                # Opened later, again relative to the root without following links.
                yield WalkedPath.found(root, here)
            else:
                yield WalkedPath.found(root, here, _SPECIAL)
        except OSError:
            yield WalkedPath.found(root, here)  # load_path reports what is wrong with it


def _walk_portable(directory: Path, root: Path, parts: tuple[str, ...]) -> Iterator[Path]:
    """Where folders cannot be opened without following links (Windows): check, then use."""
    try:
        entries = _visible_entries(directory)
    except OSError as exc:
        yield WalkedPath.found(root, parts, _listing_refusal(exc))
        return
    for entry in entries:
        here = (*parts, entry.name)
        try:
            if entry.is_symlink() or getattr(entry, "is_junction", lambda: False)():
                yield WalkedPath.found(root, here, _LINK)
            elif entry.is_dir(follow_symlinks=False):
                if len(here) > MAX_WALK_DEPTH:
                    yield WalkedPath.found(root, here, _TOO_DEEP)
                else:
                    yield from _walk_portable(Path(entry.path), root, here)
            elif entry.is_file(follow_symlinks=False):
                yield WalkedPath.found(root, here)
            else:
                yield WalkedPath.found(root, here, _SPECIAL)
        except OSError:
            yield WalkedPath.found(root, here)


def _walk(root: Path) -> Iterator[Path]:
    if not SECURE_OPEN:
        yield from _walk_portable(root, root, ())
        return
    try:
        fd = os.open(root, os.O_RDONLY | _O_CLOEXEC | _O_DIRECTORY)
    except OSError as exc:
        yield WalkedPath.found(root, (), _listing_refusal(exc))
        return
    try:
        yield from _walk_fd(fd, root, ())
    finally:
        os.close(fd)


def iter_input_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Expand input paths into the files to load.

    Every argument is a path (a ``str`` here is a path, never text). Files are yielded
    as given. Directories are walked recursively in sorted order through folder
    handles (``os.open(..., dir_fd=...)`` with ``O_NOFOLLOW``, ``os.scandir(fd)``),
    skipping hidden names (starting with ``"."``). Nothing inside a walked folder is
    reached through a symbolic link: links, special files (FIFOs, sockets, devices),
    folders nested deeper than :data:`MAX_WALK_DEPTH`, and a folder replaced by a link
    while the walk runs are yielded too, and ``load_path`` reports each with its
    reason. The files yielded are opened by ``load_path`` the same way, one component
    at a time from the walked folder, so a swap after the walk saw a folder is refused
    at the moment of reading rather than followed. A path that does not exist is
    yielded anyway, so the caller reports it per file.

    Args:
        paths: files and directories; a single path is accepted too.

    Yields:
        One path per file (a :class:`pathlib.Path`).
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]  # iterating a str would yield its characters
    for raw in paths:
        path = Path(os.fsdecode(raw))
        if path.is_dir():  # a link the caller named is followed; none below it is
            yield from _walk(path)
        else:
            yield path
