"""The served graph's auth module and user labels, in process (the HTTP tests start a real server).

The handlers are called as the LangGraph server calls them: ``authenticate`` with
the request's raw headers, the ``@auth.on`` handlers with an ``AuthContext`` and
the mutable request value.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

jwt = pytest.importorskip("jwt")
pytest.importorskip("langgraph_sdk")

from langgraph_sdk import Auth  # noqa: E402
from langgraph_sdk.auth.types import StudioUser  # noqa: E402

from personalize.errors import InvalidUserIdError  # noqa: E402
from personalize.integrations.langgraph import auth as auth_mod  # noqa: E402
from personalize.integrations.langgraph._identity import IdentityError, run_user_id  # noqa: E402
from personalize.integrations.langgraph._labels import user_from_label, user_label  # noqa: E402

_ENV = ("PERSONALIZE_API_KEYS_FILE", "PERSONALIZE_JWT_SECRET", "PERSONALIZE_JWT_PUBLIC_KEY",
        "PERSONALIZE_JWT_ALGORITHMS", "PERSONALIZE_JWT_ISSUER", "PERSONALIZE_JWT_AUDIENCE",
        "PERSONALIZE_DEMO_MODE", "PERSONALIZE_STUDIO_USER")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


def _authenticate(**headers: str) -> dict:
    raw = {k.replace("_", "-").encode(): v.encode() for k, v in headers.items()}
    return asyncio.run(auth_mod.authenticate(headers=raw))


def _status(call) -> int:
    with pytest.raises(Auth.exceptions.HTTPException) as info:
        call()
    return info.value.status_code


# ------------------------------------------------------------------- labels
_user_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,40}", fullmatch=True).filter(lambda s: ".." not in s)


@given(_user_ids)
def test_a_label_is_reversible_and_has_no_dot(user_id: str) -> None:
    label = user_label(user_id)
    assert "." not in label and label
    assert user_from_label(label) == user_id


@given(_user_ids, _user_ids)
def test_two_users_never_share_a_label(a: str, b: str) -> None:
    assert (user_label(a) == user_label(b)) == (a == b)


def test_label_examples() -> None:
    assert user_label("alice@example.com") == "alice@example%2Ecom"
    assert user_label("a.b") == "a%2Eb"
    assert user_label("bob") == "bob"
    for bad in ("a.b", "a%2eb", "a%2E%2Eb", "%2Ea", "a%b", "", "a/b"):
        with pytest.raises(InvalidUserIdError):
            user_from_label(bad)


# ------------------------------------------------------------------ API keys
def test_api_keys_from_a_file_plain_or_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"sha256:" + hashlib.sha256(b"k-alice").hexdigest(): "alice", "k-bob": "bob"}))
    monkeypatch.setenv("PERSONALIZE_API_KEYS_FILE", str(keys))
    assert _authenticate(x_api_key="k-alice")["identity"] == "alice"
    assert _authenticate(x_api_key="k-bob")["identity"] == "bob"
    assert _status(lambda: _authenticate(x_api_key="k-carol")) == 401
    assert _status(lambda: _authenticate(x_api_key=hashlib.sha256(b"k-alice").hexdigest())) == 401
    # The file is re-read when it changes: a revoked key stops working without a restart.
    time.sleep(0.01)
    keys.write_text(json.dumps({"k-bob": "bob", "k-new": "carol.c@example.com"}))
    assert _status(lambda: _authenticate(x_api_key="k-alice")) == 401
    assert _authenticate(x_api_key="k-new")["identity"] == "carol.c@example.com"


@pytest.mark.parametrize("content", ['["k"]', '{"k": "../bob"}', '{"sha256:abc": "bob"}', "not json"])
def test_an_invalid_keys_file_accepts_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(content)
    monkeypatch.setenv("PERSONALIZE_API_KEYS_FILE", str(keys))
    with pytest.raises(ValueError):
        auth_mod.load_api_keys(keys)
    assert _status(lambda: _authenticate(x_api_key="k")) == 401


# ---------------------------------------------------------------------- JWTs
def test_jwt_with_a_shared_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s" * 48
    monkeypatch.setenv("PERSONALIZE_JWT_SECRET", secret)
    monkeypatch.setenv("PERSONALIZE_JWT_ISSUER", "https://issuer.test")
    monkeypatch.setenv("PERSONALIZE_JWT_AUDIENCE", "personalize")
    now = int(time.time())
    good = {"sub": "a.b@example.com", "iss": "https://issuer.test", "aud": "personalize", "exp": now + 60}
    assert _authenticate(authorization="Bearer " + jwt.encode(good, secret))["identity"] == "a.b@example.com"
    for bad in ({**good, "exp": now - 60}, {**good, "iss": "https://evil.test"}, {**good, "aud": "other"},
                {k: v for k, v in good.items() if k != "exp"}, {k: v for k, v in good.items() if k != "sub"},
                {**good, "sub": "../etc"}):
        assert _status(lambda b=bad: _authenticate(authorization="Bearer " + jwt.encode(b, secret))) == 401
    assert _status(lambda: _authenticate(authorization="Bearer " + jwt.encode(good, "t" * 48))) == 401
    # "none" is never an accepted algorithm, even when configured.
    unsigned = jwt.encode(good, None, algorithm="none")
    assert _status(lambda: _authenticate(authorization="Bearer " + unsigned)) == 401
    monkeypatch.setenv("PERSONALIZE_JWT_ALGORITHMS", "none,HS256")
    assert _status(lambda: _authenticate(authorization="Bearer " + unsigned)) == 401
    assert _authenticate(authorization="Bearer " + jwt.encode(good, secret))["identity"] == "a.b@example.com"


def test_jwt_with_an_issuer_public_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "issuer.pem").write_bytes(pem)
    monkeypatch.setenv("PERSONALIZE_JWT_PUBLIC_KEY", str(tmp_path / "issuer.pem"))  # a path, or the PEM itself
    token = jwt.encode({"sub": "carol", "exp": int(time.time()) + 60}, private, algorithm="RS256")
    assert _authenticate(authorization=f"Bearer {token}")["identity"] == "carol"
    monkeypatch.setenv("PERSONALIZE_JWT_PUBLIC_KEY", pem.decode())
    assert _authenticate(authorization=f"Bearer {token}")["identity"] == "carol"
    # Only the configured algorithms verify: an HMAC-signed token is refused when a public key is set.
    forged = jwt.api_jws.PyJWS().encode(
        json.dumps({"sub": "bob", "exp": int(time.time()) + 60}).encode(), b"x" * 32, algorithm="HS256")
    assert _status(lambda: _authenticate(authorization=f"Bearer {forged}")) == 401


# ----------------------------------------------------------------- demo mode
def test_no_credentials_is_401_unless_demo_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _status(lambda: _authenticate()) == 401
    monkeypatch.setenv("PERSONALIZE_DEMO_MODE", "1")
    assert _authenticate()["identity"] == "alice"
    monkeypatch.setenv("PERSONALIZE_STUDIO_USER", "bob")
    assert _authenticate()["identity"] == "bob"
    assert _status(lambda: _authenticate(x_api_key="wrong")) == 401  # a wrong credential is never the demo user


def test_the_run_user_comes_from_the_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_user_id({"configurable": {"langgraph_auth_user": {"identity": "carol"}}}) == "carol"
    with pytest.raises(IdentityError):
        run_user_id({"configurable": {"user_id": "bob"}})  # the caller's fields are never the identity
    with pytest.raises(IdentityError):
        run_user_id({"configurable": {"langgraph_auth_user": StudioUser("langgraph-studio-user")}})
    monkeypatch.setenv("PERSONALIZE_DEMO_MODE", "true")
    assert run_user_id({}) == "alice"
    assert run_user_id({"configurable": {"langgraph_auth_user": StudioUser("langgraph-studio-user")}}) == "alice"


# --------------------------------------------------------------- authorization
def _ctx(identity: str | None, resource: str, action: str, *, studio: bool = False) -> Auth.types.AuthContext:
    from langgraph_sdk.auth.types import AuthContext

    class _User:
        def __init__(self, identity: str) -> None:
            self.identity = identity
            self.is_authenticated = True
            self.display_name = identity
            self.permissions = []

    user = StudioUser("langgraph-studio-user") if studio else _User(identity or "")
    return AuthContext(user=user, permissions=[], resource=resource, action=action)


def _store(identity: str, action: str, namespace, *, studio: bool = False) -> dict:
    value = {"namespace": namespace}
    asyncio.run(auth_mod.own_store_namespaces(_ctx(identity, "store", action, studio=studio), value))
    return value


def test_store_operations_must_name_the_callers_label() -> None:
    assert _store("alice", "get", ("personalize", "alice", "documents"))["namespace"][1] == "alice"
    assert _store("a.b", "put", ("memories", "a%2Eb"))["namespace"] == ("memories", "a%2Eb")
    for action, namespace in (("get", ("personalize", "bob", "documents")), ("put", ("personalize",)),
                              ("delete", ("memories", "bob")), ("search", ()), ("search", ("personalize", "bob")),
                              ("list_namespaces", ("personalize", "bob")), ("get", ("personalize", "a.b", "x"))):
        assert _status(lambda a=action, n=namespace: _store("alice", a, n)) == 403


def test_listings_and_searches_without_a_user_are_narrowed() -> None:
    assert _store("alice", "list_namespaces", None)["namespace"] == ("*", "alice")
    assert _store("alice", "list_namespaces", ("personalize",))["namespace"] == ("personalize", "alice")
    assert _store("alice", "list_namespaces", ("personalize", "*", "documents"))["namespace"] == (
        "personalize", "alice", "documents")
    assert _store("alice", "search", ("personalize",))["namespace"] == ("personalize", "alice")


def test_studio_user_reaches_the_demo_user_only_in_demo_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _status(lambda: _store("", "get", ("personalize", "alice", "documents"), studio=True)) == 403
    monkeypatch.setenv("PERSONALIZE_DEMO_MODE", "1")
    assert _store("", "get", ("personalize", "alice", "documents"), studio=True)
    assert _status(lambda: _store("", "get", ("personalize", "bob", "documents"), studio=True)) == 403


def test_runs_may_not_name_another_user() -> None:
    def create_run(identity: str, kwargs: dict) -> dict:
        value = {"kwargs": kwargs, "metadata": {}}
        return asyncio.run(auth_mod.create_run(_ctx(identity, "threads", "create_run"), value)), value

    assert create_run("alice", {"context": {"user_id": "alice"}})[0] == {"owner": "alice"}
    assert create_run("alice", {"context": {}})[1]["metadata"]["owner"] == "alice"
    assert _status(lambda: create_run("alice", {"context": {"user_id": "bob"}})) == 403
    assert _status(lambda: create_run("alice", {"config": {"configurable": {"user_id": "bob"}}})) == 403


def test_a_thread_cannot_be_handed_to_another_user() -> None:
    value = {"metadata": {"owner": "bob", "topic": "x"}}
    assert asyncio.run(auth_mod.update_own_thread(_ctx("alice", "threads", "update"), value)) == {"owner": "alice"}
    assert value["metadata"] == {"owner": "alice", "topic": "x"}
    created = {"metadata": {"owner": "bob"}}
    asyncio.run(auth_mod.create_thread(_ctx("alice", "threads", "create"), created))
    assert created["metadata"]["owner"] == "alice"


def test_everything_without_a_handler_is_denied() -> None:
    assert _status(lambda: asyncio.run(auth_mod.deny_everything_else(_ctx("alice", "crons", "create"), {}))) == 403
    handlers = set(auth_mod.auth._handlers)
    assert ("assistants", "create") not in handlers and ("crons", "create") not in handlers
    assert len(auth_mod.auth._global_handlers) == 1

