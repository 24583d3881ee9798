"""Retries for LLM calls: which failures are transient, and how long to wait.

Transient failures are timeouts, connection errors (refused, reset, dropped or
truncated responses), HTTP 429 and HTTP 5xx. Every other failure, including the
other 4xx statuses, is a bug or a configuration problem that a retry cannot fix,
so it is raised at once.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from personalize.errors import ConfigError, LLMError

__all__ = ["RetryPolicy", "call_with_retry", "is_retryable", "retry_after_seconds"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient LLM failure.

    The n-th retry waits ``initial_backoff * 2 ** (n - 1)`` seconds, capped by
    ``max_backoff``, plus up to ``jitter`` times that wait at random (so many
    threads that failed together do not retry together). A server's
    ``Retry-After`` replaces the computed wait, still capped by ``max_backoff``.

    Attributes:
        max_attempts: total attempts, the first one included (1 disables retries).
        initial_backoff: wait before the first retry, in seconds.
        max_backoff: upper bound of any single wait, in seconds.
        jitter: random extra wait, as a fraction of the computed wait (0 disables).
    """

    max_attempts: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_backoff < 0 or self.max_backoff < 0:
            raise ConfigError("backoff times must be >= 0")
        if self.jitter < 0:
            raise ConfigError(f"jitter must be >= 0, got {self.jitter}")

    def backoff(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before the ``retry``-th retry (1-based).

        Args:
            retry: which retry this is; 1 for the wait after the first failure.
            retry_after: the server's ``Retry-After`` in seconds, if it sent one.

        Returns:
            The wait in seconds, never more than ``max_backoff``.
        """
        if retry_after is not None:
            # The server knows its own load better than our schedule does; no jitter,
            # so a test (or an operator) can rely on the wait being at least this long.
            return min(max(retry_after, 0.0), self.max_backoff)
        base = min(self.initial_backoff * (2 ** (retry - 1)), self.max_backoff)
        extra = random.uniform(0.0, base * self.jitter) if self.jitter else 0.0
        return min(base + extra, self.max_backoff)


def _status_code(exc: BaseException) -> int | None:
    # Duck-typed so any client that exposes ``status_code`` (openai, httpx, others
    # wrapped by the LlamaIndex / LangChain adapters) is classified the same way.
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _is_transport_error(exc: BaseException) -> bool:
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    try:
        import openai
    except ImportError:  # pragma: no cover - openai is a core dependency
        openai = None  # type: ignore[assignment]
    if openai is not None and isinstance(exc, openai.APIConnectionError):
        return True  # covers APITimeoutError too
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx comes with openai
        return False
    return isinstance(exc, httpx.TransportError)


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is a transient failure worth another attempt.

    Args:
        exc: the exception raised by one attempt.

    Returns:
        True for timeouts, connection errors, HTTP 429 and HTTP 5xx.
    """
    status = _status_code(exc)
    if status is not None:
        return status == 429 or status >= 500
    return _is_transport_error(exc)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait a server asked for with ``retry-after-ms`` or ``Retry-After``.

    Args:
        exc: an exception that may carry an HTTP response (``exc.response.headers``).

    Returns:
        Seconds to wait, or None when the server did not say (or said nonsense).
    """
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return float(millis) / 1000.0
        value = headers.get("retry-after")
    except (AttributeError, TypeError, ValueError):
        return None
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    # HTTP also allows an HTTP-date.
    parsed = email.utils.parsedate_to_datetime(value) if value else None
    if parsed is None:
        return None
    return max(parsed.timestamp() - time.time(), 0.0)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    what: str = "LLM call",
    sleep: Callable[[float], Any] = time.sleep,
) -> T:
    """Run ``fn`` and retry it on transient failures, following ``policy``.

    Args:
        fn: the attempt; called with no arguments.
        policy: how many attempts and how long to wait between them.
        what: a short label for log messages (never user text).
        sleep: the wait function (injectable for tests).

    Returns:
        Whatever ``fn`` returns on the first successful attempt.

    Raises:
        LLMError: every attempt failed transiently; chains the last failure.
        Exception: a non-transient failure is re-raised unchanged, at once.
    """
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            status = _status_code(exc)
            reason = f"HTTP {status}" if status is not None else type(exc).__name__
            if attempt == policy.max_attempts:
                raise LLMError(
                    f"{what} failed after {policy.max_attempts} attempt(s); last error: {reason}"
                ) from exc
            wait = policy.backoff(attempt, retry_after_seconds(exc))
            # Only the failure's kind and status: the exception text could echo the prompt.
            logger.warning(
                "%s failed (%s), retrying in %.2fs (attempt %d of %d)",
                what, reason, wait, attempt + 1, policy.max_attempts,
            )
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
