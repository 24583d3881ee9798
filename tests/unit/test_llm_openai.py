"""OpenAIChat through the real ``openai`` client over HTTP against ScriptedOpenAIServer."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import openai
import pytest
from pydantic import BaseModel

from personalize.errors import ConfigError, LLMError, LLMOutputError
from personalize.llm import OpenAIChat, RetryPolicy, llm_from_env
from personalize.llm.retry import call_with_retry
from personalize.testing import Reply, ScriptedOpenAIServer

FAST = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=1.0, jitter=0.0)
USER_SECRET = "my blood type is AB negative"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": USER_SECRET},
]
_ENV = (
    "PERSONALIZE_LLM_MODEL", "OPENAI_MODEL", "PERSONALIZE_LLM_BASE_URL", "OPENAI_BASE_URL",
    "PERSONALIZE_LLM_API_KEY", "OPENAI_API_KEY", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "all_proxy",
)


class Fact(BaseModel):
    key: str
    value: str
    confidence: float


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing here may reach a real endpoint or a proxy: only 127.0.0.1.
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def srv():
    with ScriptedOpenAIServer() as server:
        yield server


def make(srv: ScriptedOpenAIServer, **kwargs) -> OpenAIChat:
    kwargs.setdefault("timeout", 5.0)
    kwargs.setdefault("retry", FAST)
    return OpenAIChat("test-model", base_url=srv.base_url, **kwargs)


# -- text -----------------------------------------------------------------------------


def test_complete_returns_text_and_sends_a_proper_request(srv):
    srv.enqueue(Reply.text("Hello there."))
    llm = make(srv)
    assert llm.complete(MESSAGES, max_tokens=32) == "Hello there."
    (request,) = srv.requests
    assert request["model"] == "test-model"
    assert request["messages"] == MESSAGES
    assert request["max_tokens"] == 32
    assert request["temperature"] == 0.0
    assert "response_format" not in request
    # A local endpoint without a key gets the placeholder: the client needs one.
    assert srv.request_headers[0]["authorization"] == "Bearer not-needed"
    assert llm.name == "test-model"


def test_environment_supplies_model_url_and_key_personalize_first(srv, monkeypatch):
    monkeypatch.setenv("PERSONALIZE_LLM_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_MODEL", "other-model")
    monkeypatch.setenv("PERSONALIZE_LLM_BASE_URL", srv.base_url)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # must lose
    monkeypatch.setenv("PERSONALIZE_LLM_API_KEY", "sk-local")
    srv.enqueue("ok")
    llm = OpenAIChat(retry=FAST)
    assert llm.complete(MESSAGES) == "ok"
    assert llm.name == "env-model"
    assert srv.requests[0]["model"] == "env-model"
    assert srv.request_headers[0]["authorization"] == "Bearer sk-local"


def test_configuration_errors_are_config_errors():
    with pytest.raises(ConfigError, match="PERSONALIZE_LLM_MODEL"):
        OpenAIChat(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="API key"):
        OpenAIChat("m")  # OpenAI's own endpoint needs a key
    with pytest.raises(ConfigError, match="json_mode"):
        OpenAIChat("m", base_url="http://127.0.0.1:9/v1", json_mode="xml")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        OpenAIChat("m", base_url="http://127.0.0.1:9/v1", max_concurrency=0)


@pytest.mark.parametrize("content", [None, "", "   "])
def test_empty_content_is_an_output_error(srv, content):
    srv.enqueue(Reply.text(content))
    with pytest.raises(LLMOutputError, match="empty content"):
        make(srv).complete(MESSAGES)
    assert len(srv.requests) == 1  # not a transient failure: no retry


def test_async_twins(srv):
    srv.enqueue("async hello", Reply.json({"key": "k", "value": "v", "confidence": 1}))
    llm = make(srv)

    async def run():
        return await llm.acomplete(MESSAGES), await llm.astructured(MESSAGES, Fact)

    text, fact = asyncio.run(run())
    assert text == "async hello"
    assert fact == Fact(key="k", value="v", confidence=1.0)


# -- structured output ---------------------------------------------------------------


def test_structured_valid_first_time_uses_json_schema(srv):
    srv.enqueue(Reply.json({"key": "diet", "value": "vegetarian", "confidence": 0.9}))
    fact = make(srv).structured(MESSAGES, Fact)
    assert fact == Fact(key="diet", value="vegetarian", confidence=0.9)
    (request,) = srv.requests
    fmt = request["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Fact"
    assert fmt["json_schema"]["schema"] == Fact.model_json_schema()
    # The schema is also in the instructions, for servers that ignore response_format.
    assert request["messages"][0]["role"] == "system"
    assert request["messages"][0]["content"].startswith("You are terse.")
    assert '"confidence"' in request["messages"][0]["content"]


def test_malformed_json_is_repaired_by_one_round_trip(srv):
    bad = '{"key": "diet", "value": "vegetarian"'  # truncated, no confidence
    srv.enqueue(bad, Reply.json({"key": "diet", "value": "vegetarian", "confidence": 0.5}))
    fact = make(srv).structured(MESSAGES, Fact)
    assert fact.confidence == 0.5
    first, second = srv.requests
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assert second["messages"][-2] == {"role": "assistant", "content": bad}
    assert "corrected JSON" in second["messages"][-1]["content"]


def test_malformed_twice_raises_output_error_with_raw(srv):
    srv.enqueue("not json at all", '{"key": "x"}')
    with pytest.raises(LLMOutputError) as info:
        make(srv).structured(MESSAGES, Fact)
    assert info.value.raw == '{"key": "x"}'
    assert "Fact" in str(info.value)
    assert len(srv.requests) == 2


def test_fenced_json_with_prose_and_trailing_comma_needs_no_repair(srv):
    srv.enqueue('Sure!\n```json\n{"key": "a", "value": "b", "confidence": 1,}\n```\nDone.')
    assert make(srv).structured(MESSAGES, Fact).key == "a"
    assert len(srv.requests) == 1


def test_auto_falls_back_to_prompt_mode_when_response_format_is_rejected(srv, caplog):
    rejection = {"error": {"message": "response_format json_schema is not supported",
                           "type": "invalid_request_error"}}
    good = Reply.json({"key": "k", "value": "v", "confidence": 0.1})
    srv.enqueue(Reply.status(400, rejection), good, good)
    llm = make(srv)
    with caplog.at_level(logging.WARNING, logger="personalize"):
        assert llm.structured(MESSAGES, Fact).key == "k"
        assert llm.structured(MESSAGES, Fact).key == "k"
    first, second, third = srv.requests
    assert first["response_format"]["type"] == "json_schema"
    assert "response_format" not in second and "response_format" not in third
    assert llm.json_mode == "prompt"
    fallbacks = [r for r in caplog.records if "response_format" in r.getMessage()]
    assert len(fallbacks) == 1  # warned once, not per call


def test_explicit_json_schema_mode_does_not_fall_back(srv):
    srv.enqueue(Reply.status(400, {"error": {"message": "unknown field response_format"}}))
    llm = make(srv, json_mode="json_schema")
    with pytest.raises(LLMError, match="response_format"):
        llm.structured(MESSAGES, Fact)
    assert len(srv.requests) == 1 and llm.json_mode == "json_schema"


def test_other_400_in_auto_mode_is_not_a_fallback(srv):
    srv.enqueue(Reply.status(400, {"error": {"message": "context length exceeded"}}))
    llm = make(srv)
    with pytest.raises(LLMError, match="HTTP 400"):
        llm.structured(MESSAGES, Fact)
    assert llm.json_mode == "auto"


def test_json_object_and_prompt_modes(srv):
    good = Reply.json({"key": "k", "value": "v", "confidence": 0})
    srv.enqueue(good, good)
    make(srv, json_mode="json_object").structured(MESSAGES, Fact)
    make(srv, json_mode="prompt").structured(MESSAGES, Fact)
    json_object, prompt = srv.requests
    assert json_object["response_format"] == {"type": "json_object"}
    assert "JSON" in json_object["messages"][0]["content"]  # OpenAI requires the word
    assert "response_format" not in prompt
    assert '"confidence"' in prompt["messages"][0]["content"]


# -- retries ----------------------------------------------------------------------------


def test_timeout_is_retried_then_succeeds(srv, caplog):
    srv.enqueue(Reply.delay(3.0, then=Reply.text("too late")), Reply.text("in time"))
    llm = make(srv, timeout=0.3)
    with caplog.at_level(logging.DEBUG, logger="personalize"):
        assert llm.complete(MESSAGES) == "in time"
    assert len(srv.requests) == 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("APITimeoutError" in r.getMessage() for r in warnings)
    # Personal data never reaches WARNING: neither the prompt nor the answer.
    assert not any(USER_SECRET in r.getMessage() for r in warnings)


def test_dropped_connection_is_retried(srv):
    srv.enqueue(Reply.drop(), Reply.text("after drop"))
    assert make(srv).complete(MESSAGES) == "after drop"
    assert len(srv.requests) == 2


def test_truncated_body_is_retried(srv):
    srv.enqueue(Reply.truncated("partial"), Reply.text("whole"))
    assert make(srv).complete(MESSAGES) == "whole"
    assert len(srv.requests) == 2


def test_500_then_success(srv):
    srv.enqueue(Reply.status(500), Reply.text("recovered"))
    assert make(srv).complete(MESSAGES) == "recovered"
    assert len(srv.requests) == 2


def test_429_retry_after_is_honoured(srv):
    srv.enqueue(Reply.status(429, retry_after=0.3), Reply.status(429, retry_after=0.3), "ok")
    start = time.monotonic()
    assert make(srv).complete(MESSAGES) == "ok"
    assert time.monotonic() - start >= 0.6
    assert len(srv.requests) == 3


def test_retry_after_is_capped_by_max_backoff(srv):
    srv.enqueue(Reply.status(429, retry_after=30), "ok")
    policy = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.05)
    start = time.monotonic()
    assert make(srv, retry=policy).complete(MESSAGES) == "ok"
    assert time.monotonic() - start < 5


def test_400_is_not_retried(srv):
    srv.enqueue(Reply.status(400, {"error": {"message": "bad request"}}), "never sent")
    with pytest.raises(LLMError, match="HTTP 400") as info:
        make(srv).complete(MESSAGES)
    assert isinstance(info.value.__cause__, openai.BadRequestError)
    assert len(srv.requests) == 1 and srv.pending == 1


def test_exhausted_retries_raise_llm_error_chaining_the_cause(srv):
    srv.enqueue(Reply.status(503), Reply.status(503), Reply.status(503), "never sent")
    with pytest.raises(LLMError, match="3 attempt") as info:
        make(srv).complete(MESSAGES)
    assert isinstance(info.value.__cause__, openai.InternalServerError)
    assert len(srv.requests) == 3 and srv.pending == 1


def test_unreachable_server_raises_llm_error(srv):
    base_url = srv.base_url
    srv.stop()
    llm = OpenAIChat("m", base_url=base_url, retry=FAST, timeout=1.0)
    with pytest.raises(LLMError) as info:
        llm.complete(MESSAGES)
    assert isinstance(info.value.__cause__, openai.APIConnectionError)


def test_concurrency_limit_is_respected(srv):
    srv.responder = lambda request: Reply.delay(0.15, then=Reply.text("ok"))
    llm = make(srv, max_concurrency=2)
    results: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        answer = llm.complete(MESSAGES)
        with lock:
            results.append(answer)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results == ["ok"] * 6
    assert len(srv.requests) == 6
    assert srv.max_in_flight == 2  # reached, never exceeded


# -- RetryPolicy and the retry helper ------------------------------------------------


def test_backoff_grows_exponentially_and_is_capped():
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=3.0, jitter=0.0)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert policy.backoff(1, retry_after=2.5) == 2.5
    assert policy.backoff(1, retry_after=100) == 3.0
    jittery = RetryPolicy(initial_backoff=1.0, max_backoff=8.0, jitter=0.5)
    assert all(1.0 <= jittery.backoff(1) <= 1.5 for _ in range(50))


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"initial_backoff": -1}, {"jitter": -0.1}])
def test_retry_policy_validates(kwargs):
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)


def test_call_with_retry_classifies_failures():
    waits: list[float] = []
    outcomes = iter([ConnectionError("reset"), TimeoutError("slow"), "done"])

    def flaky() -> str:
        item = next(outcomes)
        if isinstance(item, Exception):
            raise item
        return item

    policy = RetryPolicy(initial_backoff=0.1, jitter=0.0)
    assert call_with_retry(flaky, policy, sleep=waits.append) == "done"
    assert waits == [0.1, 0.2]

    calls = []

    def broken() -> None:
        calls.append(1)
        raise KeyError("a bug, not a transient failure")

    with pytest.raises(KeyError):
        call_with_retry(broken, policy, sleep=waits.append)
    assert len(calls) == 1


# -- llm_from_env --------------------------------------------------------------------


def test_llm_from_env_none_without_configuration():
    assert llm_from_env() is None


def test_llm_from_env_builds_a_working_client(srv, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
    monkeypatch.setenv("OPENAI_MODEL", "env-model")
    srv.enqueue("from env")
    llm = llm_from_env(retry=FAST)
    assert isinstance(llm, OpenAIChat)
    assert llm.complete(MESSAGES) == "from env"
    assert srv.requests[0]["model"] == "env-model"


def test_llm_from_env_warns_when_endpoint_has_no_model(monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with caplog.at_level(logging.WARNING, logger="personalize"):
        assert llm_from_env() is None
    assert any("PERSONALIZE_LLM_MODEL" in r.getMessage() for r in caplog.records)
