"""Errors raised by personalize.

Every error derives from :class:`PersonalizeError` *and* from the builtin it
refines, so callers can catch either::

    PersonalizeError
    ├── ConfigError            (ValueError)   bad argument or configuration
    │   ├── InvalidUserIdError (ValueError)   user id that could escape the data dir
    │   └── ConflictError      (ValueError)   a caller id exists and on_conflict="error"
    ├── MissingDependencyError (ImportError)  optional backend not installed
    ├── NotFoundError          (KeyError)     unknown user, task, document
    ├── IngestError            (ValueError)   one input could not be ingested
    ├── StoreError             (RuntimeError) the data directory or database is unusable
    │   └── StoreUnavailableError (ConnectionError) the database cannot be reached (retried)
    ├── IndexBackendError      (RuntimeError) a vector index backend failed
    └── LLMError               (RuntimeError) the LLM failed after retries
        └── LLMOutputError     (ValueError)   malformed model output, carries ``raw``
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConflictError",
    "IndexBackendError",
    "IngestError",
    "InvalidUserIdError",
    "LLMError",
    "LLMOutputError",
    "MissingDependencyError",
    "NotFoundError",
    "PersonalizeError",
    "StoreError",
    "StoreUnavailableError",
]


class PersonalizeError(Exception):
    """Base class of every error raised by personalize."""


class ConfigError(PersonalizeError, ValueError):
    """An argument or a configuration value is invalid."""


class InvalidUserIdError(ConfigError):
    """A user id is empty, too long, or could escape the data directory."""


class ConflictError(ConfigError):
    """An input's caller id already exists and ``on_conflict="error"`` was asked for."""


class MissingDependencyError(PersonalizeError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package: "
            f"pip install 'personalize[{extra}]'"
        )
        self.package = package
        self.extra = extra


class NotFoundError(PersonalizeError, KeyError):
    """A user, task or record does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class IngestError(PersonalizeError, ValueError):
    """One input (file, string, message) could not be ingested."""


class StoreError(PersonalizeError, RuntimeError):
    """The data directory or its SQLite database is unusable."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The database could not be reached, or the connection broke, after bounded retries.

    A write that raised it was not applied (its transaction was rolled back or
    never committed); retrying the call is safe.
    """


class IndexBackendError(PersonalizeError, RuntimeError):
    """A vector index backend failed."""


class LLMError(PersonalizeError, RuntimeError):
    """The LLM could not be reached or kept failing after the configured retries."""


class LLMOutputError(LLMError, ValueError):
    """The LLM answered, but its output could not be parsed or repaired.

    Attributes:
        raw: the model's raw text, for logging at DEBUG or for inspection.
    """

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw
