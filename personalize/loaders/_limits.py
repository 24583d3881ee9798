"""Resource limits applied to every input before and while it is parsed."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from personalize.errors import ConfigError

__all__ = ["LoaderLimits"]


@dataclass(frozen=True)
class LoaderLimits:
    """Caps that keep one hostile or accidental input from exhausting memory or time.

    Attributes:
        max_file_bytes: largest file read at all; checked with ``os.fstat`` on the open
            file before reading. Also the longest CSV cell accepted.
        max_text_chars: most text extracted from one input. Compressed containers
            (PDF streams, zipped exports) can inflate far beyond their file size, so
            the size of the file alone does not bound memory.
        max_messages: most items (chat turns, e-mails, csv rows) taken from one input.
        max_parse_seconds: wall-clock budget for parsing one file. Parsers check it as
            they go (per HTML event batch, row, message, page or slide); a file that
            runs over fails alone with kind ``"timeout"`` and the batch goes on. It is
            a guard against stalls, not a tuning knob: every loader is linear in its
            input, so real files finish far inside it.
    """

    max_file_bytes: int = 50 * 1024 * 1024
    max_text_chars: int = 20_000_000
    max_messages: int = 1_000_000
    max_parse_seconds: float = 120.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "max_parse_seconds":
                ok = (
                    isinstance(value, (int, float))
                    and not isinstance(value, bool)
                    and math.isfinite(value)
                    and value > 0
                )
                if not ok:
                    raise ConfigError(
                        f"LoaderLimits.{f.name} must be a positive number of seconds, "
                        f"got {value!r}"
                    )
                continue
            # bool is an int subclass; True as a byte limit is a bug, not a limit of 1.
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"LoaderLimits.{f.name} must be a positive int, got {value!r}")
