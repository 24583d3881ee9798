"""Resource limits applied to every input before and while it is parsed."""

from __future__ import annotations

from dataclasses import dataclass, fields

from personalize.errors import ConfigError

__all__ = ["LoaderLimits"]


@dataclass(frozen=True)
class LoaderLimits:
    """Caps that keep one hostile or accidental input from exhausting memory.

    Attributes:
        max_file_bytes: largest file read at all; checked with ``os.stat`` before reading.
        max_text_chars: most text extracted from one input. Compressed containers
            (PDF streams, zipped exports) can inflate far beyond their file size, so
            the size of the file alone does not bound memory.
        max_messages: most items (chat turns, e-mails, csv rows) taken from one input.
    """

    max_file_bytes: int = 50 * 1024 * 1024
    max_text_chars: int = 20_000_000
    max_messages: int = 1_000_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # bool is an int subclass; True as a byte limit is a bug, not a limit of 1.
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"LoaderLimits.{f.name} must be a positive int, got {value!r}")
