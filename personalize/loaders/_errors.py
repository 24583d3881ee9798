"""The loaders' error type: an :class:`~personalize.errors.IngestError` with a kind."""

from __future__ import annotations

from typing import Literal, get_args

from personalize.errors import IngestError
from personalize.types import FileError

__all__ = ["ERROR_KINDS", "LoaderError", "LoaderErrorKind"]

LoaderErrorKind = Literal[
    "missing",
    "unreadable",
    "binary",
    "empty",
    "too_large",
    "too_complex",
    "timeout",
    "unsupported",
    "invalid",
]
ERROR_KINDS: frozenset[str] = frozenset(get_args(LoaderErrorKind))


def _restore(message: str, kind: LoaderErrorKind, source: str) -> LoaderError:
    return LoaderError(message, kind=kind, source=source)


class LoaderError(IngestError):
    """One input could not be loaded.

    Attributes:
        kind: why, as a stable machine-readable word: ``"missing"``, ``"unreadable"``,
            ``"binary"``, ``"empty"``, ``"too_large"``, ``"too_complex"`` (nested deeper
            than a parser can follow), ``"timeout"`` (took longer than
            ``LoaderLimits.max_parse_seconds``), ``"unsupported"`` or ``"invalid"``.
        source: the input that failed (a file path, ``"<text>"``, ``"<messages>[3]"``,
            ``"/mail/archive.mbox#3"`` for the third message of a mailbox).
    """

    def __init__(self, message: str, *, kind: LoaderErrorKind, source: str) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown LoaderError kind {kind!r}")
        super().__init__(message)
        self.kind: LoaderErrorKind = kind
        self.source = source

    def __reduce__(self):  # type: ignore[override]
        # Keyword-only __init__ arguments defeat the default exception pickling,
        # and errors cross process boundaries when ingestion runs in a pool.
        return (_restore, (str(self), self.kind, self.source))

    def to_file_error(self) -> FileError:
        """This error as the :class:`FileError` reported in an ingest result."""
        return FileError(source=self.source, error=str(self), kind=self.kind)
