"""``FakeLLM``: a scripted, recording stand-in for an LLM in tests."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Union

from personalize.llm.base import M
from personalize.llm.structured import structured_call

__all__ = ["FakeLLM", "ScriptItem"]

Messages = list[dict[str, str]]
#: One scripted answer: a reply text, a function of the messages, or an exception to raise.
ScriptItem = Union[str, Callable[[Messages], str], BaseException]


class FakeLLM:
    """An :class:`~personalize.llm.LLM` that answers from a script and records every call.

    Each call (each round-trip: a :meth:`structured` call that needs a repair makes
    two) consumes the next script item: a string is returned, a callable is called
    with the messages and its result returned, an exception instance is raised.
    When the script runs out the call raises ``AssertionError``, so a test notices
    an unexpected extra call instead of getting a made-up answer.

    Example::

        llm = FakeLLM(['{"facts": []}', TimeoutError("boom")])
        ...
        assert llm.calls[0][-1]["content"].startswith("Extract")

    Args:
        script: the answers, in order.
        name: the model name reported by :attr:`name`.
        responder: answers every call once the script is used up (see :meth:`responder`).

    Attributes:
        calls: the messages of every call, in order (copies, safe to inspect).
        max_tokens: the ``max_tokens`` argument of every call, in order.
    """

    def __init__(
        self,
        script: Iterable[ScriptItem] = (),
        *,
        name: str = "fake",
        responder: Callable[[Messages], str] | None = None,
    ) -> None:
        self._script: deque[ScriptItem] = deque(script)
        self._responder = responder
        self._name = name
        self._lock = threading.Lock()
        self.calls: list[Messages] = []
        self.max_tokens: list[int | None] = []

    @classmethod
    def responder(cls, fn: Callable[[Messages], str], *, name: str = "fake") -> FakeLLM:
        """A FakeLLM that computes every reply from the messages, without end.

        Use it for tests that make many calls (a batch refresh over many users).

        Args:
            fn: called with each call's messages; returns the reply text.
            name: the model name reported by :attr:`name`.

        Returns:
            The fake.
        """
        return cls((), name=name, responder=fn)

    @property
    def name(self) -> str:
        """The scripted model name."""
        return self._name

    @property
    def remaining(self) -> int:
        """How many script items are still unused."""
        with self._lock:
            return len(self._script)

    def complete(
        self, messages: Sequence[Mapping[str, str]], *, max_tokens: int | None = None
    ) -> str:
        """Record the call and answer with the next script item.

        Raises:
            AssertionError: the script is exhausted and there is no responder.
            BaseException: the scripted exception, when that is the next item.
        """
        recorded = [dict(m) for m in messages]
        with self._lock:
            self.calls.append(recorded)
            self.max_tokens.append(max_tokens)
            if self._script:
                item: ScriptItem | None = self._script.popleft()
            elif self._responder is not None:
                item = self._responder
            else:
                item = None
            number = len(self.calls)
        if item is None:
            raise AssertionError(
                f"FakeLLM script exhausted at call {number}: add more replies "
                "or use FakeLLM.responder(...)"
            )
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            return item([dict(m) for m in recorded])
        return item

    def structured(
        self,
        messages: Sequence[Mapping[str, str]],
        schema: type[M],
        *,
        max_tokens: int | None = None,
    ) -> M:
        """Answer with JSON validated against ``schema``, exactly as a real LLM would:
        through :func:`~personalize.llm.structured_call` (parse, then one repair)."""
        return structured_call(
            lambda conv: self.complete(conv, max_tokens=max_tokens), messages, schema
        )
