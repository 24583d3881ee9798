"""The served graph takes its user from the run's authenticated identity, in process.

The LangGraph server puts the identity in ``config["configurable"]["langgraph_auth_user"]``
(and strips that key from what callers send); these tests pass it the same way, so the
graph's own defence is checked without the server's auth handlers in front of it
(tests/integration/test_langgraph_auth_http.py runs both over HTTP).
"""

from __future__ import annotations

import pytest

from personalize.errors import ConfigError
from personalize.integrations.langgraph import RunContext, create_served_graph
from personalize.integrations.langgraph._identity import IdentityError


def _as(identity: str | None) -> dict:
    return {"configurable": {"langgraph_auth_user": {"identity": identity} if identity else None}}


@pytest.fixture
def served(loaded):
    return create_served_graph(loaded)


def test_the_user_is_the_identity(served, fingerprints, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONALIZE_DEMO_MODE", raising=False)
    out = served.invoke({"query": "What am I allergic to?"}, _as("bob"), context={"budget_tokens": 300})
    assert out["personal_context"]["user_id"] == "bob" and "peanut" in out["prompt"].lower()
    assert out["personal_context"]["tokens"] <= 300
    # The input has no user: a "user_id" there changes nothing.
    out = served.invoke({"query": "What am I allergic to?", "user_id": "alice"}, _as("bob"))
    assert out["personal_context"]["user_id"] == "bob"
    assert not [w for w in fingerprints["alice"] if w in out["prompt"].lower()]


def test_a_context_naming_another_user_fails_the_run(served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONALIZE_DEMO_MODE", raising=False)
    with pytest.raises(IdentityError):
        served.invoke({"query": "What am I allergic to?"}, _as("alice"), context=RunContext(user_id="bob"))
    out = served.invoke({"query": "Which editor do I use?"}, _as("alice"), context=RunContext(user_id="alice"))
    assert out["personal_context"]["user_id"] == "alice"


def test_no_identity_fails_unless_demo_mode(served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONALIZE_DEMO_MODE", raising=False)
    with pytest.raises(IdentityError):
        served.invoke({"query": "Which editor do I use?"})
    with pytest.raises(IdentityError):
        served.invoke({"query": "Which editor do I use?"}, context={"user_id": "alice"})
    monkeypatch.setenv("PERSONALIZE_DEMO_MODE", "1")
    monkeypatch.setenv("PERSONALIZE_STUDIO_USER", "carol")
    out = served.invoke({"query": "What do I use for single-cell analysis?"})
    assert out["personal_context"]["user_id"] == "carol" and "scanpy" in out["prompt"].lower()


def test_the_demo_app_served_takes_the_identity(loaded, repo_root, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys

    monkeypatch.delenv("PERSONALIZE_DEMO_MODE", raising=False)
    path = repo_root / "demos" / "langgraph" / "app.py"
    spec = importlib.util.spec_from_file_location("demo_langgraph_app_served", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    app = module.build_app(loaded, served=True)
    out = app.invoke({"question": "What should I eat before my race?"}, _as("bob"), context=module.AppContext())
    assert "peanut" in out["personal_context"].lower()
    with pytest.raises(ConfigError):
        app.invoke({"question": "What should I eat before my race?"}, _as("alice"), context=module.AppContext("bob"))
    with pytest.raises(IdentityError):
        app.invoke({"question": "What should I eat before my race?"}, context=module.AppContext("bob"))
