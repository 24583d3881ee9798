"""``Reply``: one scripted behaviour of :class:`~personalize.testing.ScriptedOpenAIServer`."""

from __future__ import annotations

import json as _json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Reply", "ReplyKind"]

ReplyKind = Literal["text", "status", "delay", "drop", "truncated"]


@dataclass(frozen=True)
class Reply:
    """One scripted server behaviour; build it with the classmethods.

    Attributes:
        kind: ``"text"``, ``"status"``, ``"delay"``, ``"drop"`` or ``"truncated"``.
        content: the assistant message content (``text`` and ``truncated``).
        finish_reason: the choice's ``finish_reason`` (``text``).
        status_code: the HTTP status (``status``).
        body: the response body for ``status`` (JSON-serializable or str).
        retry_after: the ``Retry-After`` header value in seconds (``status``).
        seconds: how long to wait before answering (``delay``).
        then: what to do after the wait (``delay``); None drops the connection.
    """

    kind: ReplyKind
    content: str | None = None
    finish_reason: str = "stop"
    status_code: int = 200
    body: Any = None
    retry_after: float | None = None
    seconds: float = 0.0
    then: Reply | None = None

    def __post_init__(self) -> None:
        if not 100 <= self.status_code <= 599:
            raise ValueError(f"status_code must be an HTTP status, got {self.status_code}")
        if self.seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {self.seconds}")

    @classmethod
    def text(cls, content: str | None, *, finish_reason: str = "stop") -> Reply:
        """A normal completion whose message content is ``content`` (None sends null)."""
        return cls("text", content=content, finish_reason=finish_reason)

    @classmethod
    def json(cls, obj: Any) -> Reply:
        """A normal completion whose content is ``obj`` serialized as JSON."""
        return cls("text", content=_json.dumps(obj))

    @classmethod
    def status(
        cls, code: int, body: Any = None, retry_after: float | None = None
    ) -> Reply:
        """An HTTP error (or any status) with an OpenAI-style error body by default.

        Args:
            code: the HTTP status, e.g. 400, 429, 500, 503.
            body: the body to send instead of ``{"error": {...}}``.
            retry_after: seconds for the ``Retry-After`` header.
        """
        return cls("status", status_code=code, body=body, retry_after=retry_after)

    @classmethod
    def delay(cls, seconds: float, then: Reply | None = None) -> Reply:
        """Wait ``seconds`` (to trip a client timeout), then behave as ``then``."""
        return cls("delay", seconds=seconds, then=then)

    @classmethod
    def drop(cls) -> Reply:
        """Close the connection without sending any response."""
        return cls("drop")

    @classmethod
    def truncated(cls, content: str) -> Reply:
        """Send a completion whose ``Content-Length`` exceeds its body, then close."""
        return cls("truncated", content=content)
