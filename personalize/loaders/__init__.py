"""Input loaders: files, strings and chat messages → :class:`~personalize.types.LoadedItem`.

Every failure is a :class:`LoaderError` (an :class:`~personalize.errors.IngestError`)
whose ``kind`` says why and whose message names the input, never its content. Functions
that take files take paths (``str`` or ``os.PathLike``); texts go to :func:`load_text`.
"""

from __future__ import annotations

from ._errors import LoaderError
from ._files import SUPPORTED_SUFFIXES, iter_input_files, load_path
from ._limits import LoaderLimits
from ._messages import load_messages
from ._text import load_text

__all__ = [
    "LoaderError",
    "LoaderLimits",
    "SUPPORTED_SUFFIXES",
    "iter_input_files",
    "load_messages",
    "load_path",
    "load_text",
]
