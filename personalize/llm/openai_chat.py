"""``OpenAIChat``: the official ``openai`` client against any OpenAI-compatible endpoint.

Works with OpenAI itself and with local servers (vLLM, Ollama, llama.cpp server).
The client's own retries are switched off (``max_retries=0``) so that one
:class:`~personalize.llm.RetryPolicy` governs every retry and its logging.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from personalize.errors import ConfigError, LLMError, LLMOutputError
from personalize.llm.base import M
from personalize.llm.retry import RetryPolicy, call_with_retry
from personalize.llm.structured import structured_call

if TYPE_CHECKING:
    import openai

__all__ = ["JsonMode", "OpenAIChat"]

logger = logging.getLogger(__name__)

JsonMode = Literal["auto", "json_schema", "json_object", "prompt"]
_JSON_MODES = ("auto", "json_schema", "json_object", "prompt")

#: Sent when a base URL is configured without a key: local servers ignore the key,
#: but the openai client refuses to start without one.
PLACEHOLDER_API_KEY = "not-needed"


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


class _ResponseFormatRejected(LLMError):
    """The server refused ``response_format`` (it does not support JSON-schema output)."""


def _rejects_response_format(exc: openai.APIStatusError) -> bool:
    if exc.status_code not in (400, 422):
        return False
    text = f"{exc.message} {exc.body!r}".lower()
    return any(word in text for word in ("response_format", "json_schema", "json schema"))


def _schema_name(schema: type[BaseModel]) -> str:
    # OpenAI requires ^[a-zA-Z0-9_-]{1,64}$ for the schema name.
    return re.sub(r"[^a-zA-Z0-9_-]", "_", schema.__name__)[:64] or "Output"


class OpenAIChat:
    """An :class:`~personalize.llm.LLM` backed by ``openai.OpenAI`` chat completions.

    Example::

        llm = OpenAIChat("qwen2.5-7b-instruct", base_url="http://127.0.0.1:8000/v1")
        llm.complete([{"role": "user", "content": "Hello"}])

    Args:
        model: the model id; defaults to ``$PERSONALIZE_LLM_MODEL``, then ``$OPENAI_MODEL``.
        base_url: the endpoint; defaults to ``$PERSONALIZE_LLM_BASE_URL``, then
            ``$OPENAI_BASE_URL``, then OpenAI's own.
        api_key: defaults to ``$PERSONALIZE_LLM_API_KEY``, then ``$OPENAI_API_KEY``;
            with a base URL and no key, a placeholder is sent (local servers ignore it).
        timeout: seconds per HTTP attempt.
        retry: the retry policy for timeouts, connection errors, 429 and 5xx.
        max_concurrency: most requests in flight at once from this instance, across
            threads (batch refresh runs many).
        json_mode: how :meth:`structured` asks for JSON: ``"json_schema"`` and
            ``"json_object"`` set ``response_format``; ``"prompt"`` relies on the
            instructions alone; ``"auto"`` tries ``json_schema`` and falls back to
            ``"prompt"`` for good if the server rejects ``response_format``.
        temperature: sampling temperature (0 keeps summaries reproducible).
        client: a ready ``openai.OpenAI`` client to use instead of building one; its
            own retry setting is then yours to choose.

    Raises:
        ConfigError: no model is configured, no key for OpenAI's own endpoint, or an
            invalid argument.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        max_concurrency: int = 4,
        json_mode: JsonMode = "auto",
        temperature: float = 0.0,
        client: openai.OpenAI | None = None,
    ) -> None:
        model = model or _env("PERSONALIZE_LLM_MODEL", "OPENAI_MODEL")
        if not model:
            raise ConfigError(
                "no LLM model configured: pass model=... or set PERSONALIZE_LLM_MODEL"
            )
        if json_mode not in _JSON_MODES:
            raise ConfigError(f"json_mode must be one of {_JSON_MODES}, got {json_mode!r}")
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if timeout <= 0:
            raise ConfigError(f"timeout must be > 0, got {timeout}")
        self._model = model
        self._retry = retry
        self._json_mode: JsonMode = json_mode
        self._temperature = temperature
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._mode_lock = threading.Lock()
        self._owns_client = client is None
        if client is None:
            import openai

            base_url = base_url or _env("PERSONALIZE_LLM_BASE_URL", "OPENAI_BASE_URL")
            api_key = api_key or _env("PERSONALIZE_LLM_API_KEY", "OPENAI_API_KEY")
            if not api_key:
                if not base_url:
                    raise ConfigError(
                        "no API key for OpenAI: set PERSONALIZE_LLM_API_KEY or "
                        "OPENAI_API_KEY, or point PERSONALIZE_LLM_BASE_URL at a local server"
                    )
                api_key = PLACEHOLDER_API_KEY
            client = openai.OpenAI(
                api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
            )
        self._client = client

    @property
    def name(self) -> str:
        """The model id."""
        return self._model

    @property
    def json_mode(self) -> JsonMode:
        """The JSON mode in effect (``"prompt"`` after an ``"auto"`` fallback)."""
        return self._json_mode

    def __repr__(self) -> str:
        return f"OpenAIChat(model={self._model!r}, base_url={str(self._client.base_url)!r})"

    def complete(
        self, messages: Sequence[Mapping[str, str]], *, max_tokens: int | None = None
    ) -> str:
        """Answer the conversation with text.

        Args:
            messages: OpenAI-style message dicts, oldest first.
            max_tokens: upper bound on the reply's tokens.

        Returns:
            The reply text.

        Raises:
            LLMError: the server could not be reached or kept failing.
            LLMOutputError: the server answered without content.
        """
        return self._chat(messages, max_tokens, None)

    def structured(
        self,
        messages: Sequence[Mapping[str, str]],
        schema: type[M],
        *,
        max_tokens: int | None = None,
    ) -> M:
        """Answer the conversation with JSON validated against ``schema``.

        Args:
            messages: OpenAI-style message dicts, oldest first.
            schema: the pydantic model the answer must validate against.
            max_tokens: upper bound on each reply's tokens.

        Returns:
            The validated model instance.

        Raises:
            LLMError: the server could not be reached or kept failing.
            LLMOutputError: the reply was still invalid after one repair round-trip.
        """

        def complete_fn(conversation: list[dict[str, str]]) -> str:
            mode = self._json_mode
            if mode == "prompt":
                return self._chat(conversation, max_tokens, None)
            try:
                return self._chat(conversation, max_tokens, self._response_format(mode, schema))
            except _ResponseFormatRejected:
                if mode != "auto":
                    raise
                self._fall_back_to_prompt()
                return self._chat(conversation, max_tokens, None)

        return structured_call(complete_fn, messages, schema)

    async def acomplete(
        self, messages: Sequence[Mapping[str, str]], *, max_tokens: int | None = None
    ) -> str:
        """Async twin of :meth:`complete` (runs it in a worker thread)."""
        return await asyncio.to_thread(self.complete, messages, max_tokens=max_tokens)

    async def astructured(
        self,
        messages: Sequence[Mapping[str, str]],
        schema: type[M],
        *,
        max_tokens: int | None = None,
    ) -> M:
        """Async twin of :meth:`structured` (runs it in a worker thread)."""
        return await asyncio.to_thread(self.structured, messages, schema, max_tokens=max_tokens)

    def close(self) -> None:
        """Close the HTTP client, if this instance created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> OpenAIChat:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------

    @staticmethod
    def _response_format(mode: str, schema: type[BaseModel]) -> dict[str, Any]:
        if mode == "json_object":
            return {"type": "json_object"}
        # strict=False: pydantic schemas do not meet OpenAI's strict-mode rules (every
        # property required, additionalProperties false); the parse + repair covers it.
        return {
            "type": "json_schema",
            "json_schema": {
                "name": _schema_name(schema),
                "schema": schema.model_json_schema(),
                "strict": False,
            },
        }

    def _fall_back_to_prompt(self) -> None:
        with self._mode_lock:
            if self._json_mode != "auto":
                return  # another thread already fell back and logged it
            self._json_mode = "prompt"
        logger.warning(
            "LLM endpoint rejected response_format for model %s; "
            "using prompt-only JSON from now on",
            self._model,
        )

    def _chat(
        self,
        messages: Sequence[Mapping[str, str]],
        max_tokens: int | None,
        response_format: dict[str, Any] | None,
    ) -> str:
        import openai

        kwargs: dict[str, Any] = {
            "model": self._model,
            "messages": [dict(m) for m in messages],
            "temperature": self._temperature,
        }
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if response_format is not None:
            kwargs["response_format"] = response_format

        def attempt() -> Any:
            # The slot is held per attempt, not across backoff sleeps, so a waiting
            # retry does not starve other threads.
            with self._slots:
                return self._client.chat.completions.create(**kwargs)

        what = f"chat completion ({self._model})"
        try:
            completion = call_with_retry(attempt, self._retry, what=what)
        except openai.APIStatusError as exc:
            if response_format is not None and _rejects_response_format(exc):
                raise _ResponseFormatRejected(
                    f"{what}: the endpoint rejected response_format "
                    f"(HTTP {exc.status_code}); use json_mode='prompt' or 'auto'"
                ) from exc
            raise LLMError(f"{what} failed with HTTP {exc.status_code}: {exc.message[:200]}") from exc
        except openai.OpenAIError as exc:
            raise LLMError(f"{what} failed: {type(exc).__name__}") from exc

        if not completion.choices:
            raise LLMOutputError(f"{what}: the server returned no choices", raw="")
        content = completion.choices[0].message.content
        if not content or not content.strip():
            raise LLMOutputError(f"{what}: the server returned empty content", raw=content or "")
        logger.debug("%s answered: %r", what, content)
        return content
