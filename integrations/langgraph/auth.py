"""Authentication and authorization of the served graph (``langgraph.json``'s ``"auth"``).

The LangGraph server (``langgraph dev``, ``langgraph up``, a LangGraph
deployment) loads ``auth`` from this file: ``@auth.authenticate`` turns the
request's credentials into an identity, which *is* the user id, and the
``@auth.on`` handlers confine every thread, run and store operation to that user.

Credentials (configured through the environment, never in code):

- **API keys**: ``PERSONALIZE_API_KEYS_FILE`` names a JSON file mapping keys to
  user ids; a client sends its key as ``x-api-key: <key>``. Write the SHA-256 of
  a key rather than the key (``"sha256:<64 hex digits>": "alice"``); a plain
  ``"<key>": "alice"`` entry works too. The file is re-read when it changes.
- **JWTs** from your identity provider, verified with PyJWT: a client sends
  ``Authorization: Bearer <token>``. ``PERSONALIZE_JWT_SECRET`` (HMAC) or
  ``PERSONALIZE_JWT_PUBLIC_KEY`` (a PEM, or the path of a PEM file),
  ``PERSONALIZE_JWT_ALGORITHMS`` (default ``HS256`` with a secret, ``RS256,ES256``
  with a public key), ``PERSONALIZE_JWT_ISSUER`` and ``PERSONALIZE_JWT_AUDIENCE``
  (checked when set). The ``sub`` claim is the user id; ``exp`` is required.
- **Demo mode** (``PERSONALIZE_DEMO_MODE=1``, off by default): a request without
  credentials, and LangGraph Studio's anonymous user, act as the demo user
  (``$PERSONALIZE_STUDIO_USER``, default ``alice``). Never on a shared network.

Authorization (default deny; each handler below is the only way in):

- threads: created with ``metadata.owner`` = the user; read, updated, deleted,
  searched and run only by their owner;
- runs: the graph takes the user from the identity (see ``studio.py``); a run
  whose context names another user is refused here already (403);
- store: a namespace's second label is its user (``("personalize", user, kind)``,
  ``("memories", user)`` for LangMem): every operation must name the caller's own
  label (:func:`~personalize.integrations.langgraph.user_label`); a listing or
  search without one is narrowed to it;
- assistants: read and searched by every user; created, changed or deleted by
  nobody over HTTP (the deployment defines them); crons: refused.

A wrong or missing credential is 401; an authenticated user reaching another
user's data is 403 (or, for threads, 404: the owner filter hides the thread).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langgraph_sdk import Auth

from personalize._ids import validate_user_id
from personalize.errors import InvalidUserIdError
from personalize.integrations.langgraph._identity import IdentityError, demo_mode, user_id_of
from personalize.integrations.langgraph._labels import user_label

__all__ = ["auth", "load_api_keys", "verify_jwt"]

logger = logging.getLogger(__name__)

auth = Auth()

_KEYS_LOCK = threading.Lock()
_KEYS_CACHE: dict[str, Any] = {"path": None, "stamp": None, "keys": {}}
_PEM_CACHE: dict[str, Any] = {}


def _unauthorized(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(status_code=401, detail=detail)


def _forbidden(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(status_code=403, detail=detail)


# --------------------------------------------------------------------- credentials
def load_api_keys(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read an API keys file: ``{"sha256:<hex>" or "<key>": user_id}`` -> ``{sha256 hex: user_id}``.

    Raises:
        ValueError: the file is not a JSON object of strings, or names an invalid user id.
        OSError: the file cannot be read.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, Mapping):
        raise ValueError("an API keys file is a JSON object {key or 'sha256:<hex>': user_id}")
    keys: dict[str, str] = {}
    for key, user in data.items():
        if not isinstance(key, str) or not key or not isinstance(user, str):
            raise ValueError("an API keys file maps non-empty strings to user id strings")
        validate_user_id(user)
        if key.startswith("sha256:"):
            digest = key[len("sha256:"):].lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError("a 'sha256:' entry needs 64 hex digits")
        else:
            digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        keys[digest] = user
    return keys


def _api_keys() -> dict[str, str]:
    path = os.environ.get("PERSONALIZE_API_KEYS_FILE")
    if not path:
        return {}
    try:
        stat = os.stat(path)
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    except OSError:
        logger.error("PERSONALIZE_API_KEYS_FILE cannot be read; no API key is accepted")
        return {}
    with _KEYS_LOCK:
        if _KEYS_CACHE["path"] != path or _KEYS_CACHE["stamp"] != stamp:
            try:
                keys = load_api_keys(path)
            except (OSError, ValueError) as exc:
                logger.error("PERSONALIZE_API_KEYS_FILE is invalid (%s); no API key is accepted", type(exc).__name__)
                keys = {}
            _KEYS_CACHE.update(path=path, stamp=stamp, keys=keys)
        return _KEYS_CACHE["keys"]


def _user_for_api_key(key: str) -> str:
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    user = None
    for known, owner in _api_keys().items():
        # Compare every entry in constant time: no timing hint about which key is close.
        if hmac.compare_digest(known, digest):
            user = owner
    if user is None:
        raise _unauthorized("unknown API key")
    return user


def _read_pem(path: Path) -> str:
    """The issuer's public key file, re-read only when it changes (a key rotation needs no restart)."""
    try:
        stat = path.stat()
    except OSError:
        logger.error("PERSONALIZE_JWT_PUBLIC_KEY names a file that cannot be read; no token is accepted")
        raise _unauthorized("the token issuer's public key cannot be read on this server") from None
    stamp = (str(path), stat.st_mtime_ns, stat.st_size)
    with _KEYS_LOCK:
        if _PEM_CACHE.get("stamp") != stamp:
            _PEM_CACHE.update(stamp=stamp, pem=path.read_text(encoding="utf-8"))
        return _PEM_CACHE["pem"]


def _jwt_key() -> tuple[Any, list[str]] | None:
    secret = os.environ.get("PERSONALIZE_JWT_SECRET")
    public = os.environ.get("PERSONALIZE_JWT_PUBLIC_KEY")
    algorithms = [a.strip() for a in os.environ.get("PERSONALIZE_JWT_ALGORITHMS", "").split(",")
                  if a.strip() and a.strip().lower() != "none"]  # an unsigned token is never accepted
    if public:
        if not public.lstrip().startswith("-----BEGIN"):
            public = _read_pem(Path(public).expanduser())
        return public, algorithms or ["RS256", "ES256"]
    if secret:
        return secret, algorithms or ["HS256"]
    return None


def verify_jwt(token: str) -> str:
    """The user id (``sub``) of a JWT verified against the configured issuer key.

    Raises:
        Auth.exceptions.HTTPException: 401 when JWTs are not configured or the
            token is invalid, expired, from another issuer or for another audience.
    """
    import jwt

    key = _jwt_key()
    if key is None:
        raise _unauthorized("bearer tokens are not configured on this server")
    secret, algorithms = key
    issuer = os.environ.get("PERSONALIZE_JWT_ISSUER") or None
    audience = os.environ.get("PERSONALIZE_JWT_AUDIENCE") or None
    required = ["exp", "sub"] + (["iss"] if issuer else []) + (["aud"] if audience else [])
    try:
        claims = jwt.decode(token, secret, algorithms=algorithms, issuer=issuer, audience=audience,
                            options={"require": required})
    except jwt.PyJWTError as exc:
        raise _unauthorized(f"invalid token ({type(exc).__name__})") from None
    try:
        return validate_user_id(claims["sub"])
    except InvalidUserIdError:
        raise _unauthorized("the token's subject is not a valid user id") from None


@auth.authenticate
async def authenticate(headers: dict[bytes, bytes] | None = None) -> Auth.types.MinimalUserDict:
    """The identity (the user id) of a request's credentials.

    ``x-api-key`` is an API key, ``Authorization: Bearer`` a JWT; neither is the
    demo user in demo mode, and 401 otherwise.
    """
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in (headers or {}).items()}
    api_key = headers.get("x-api-key", "").strip()
    authorization = headers.get("authorization", "").strip()
    if api_key:
        user = _user_for_api_key(api_key)
        kind = "api_key"
    elif authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("use 'Authorization: Bearer <token>' or 'x-api-key: <key>'")
        user = verify_jwt(token.strip())
        kind = "jwt"
    elif demo_mode():
        user = user_id_of(None)
        kind = "demo"
    else:
        raise _unauthorized("credentials required: 'x-api-key: <key>' or 'Authorization: Bearer <token>'")
    return {"identity": user, "display_name": user, "is_authenticated": True, "permissions": [f"via:{kind}"]}


# ------------------------------------------------------------------- authorization
def _me(ctx: Auth.types.AuthContext) -> str:
    """The caller's user id (a Studio user is the demo user in demo mode, refused otherwise)."""
    try:
        return user_id_of(ctx.user)
    except (IdentityError, InvalidUserIdError):
        raise _forbidden("this identity may not use this server") from None


@auth.on
async def deny_everything_else(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """Default deny: a resource or action without its own handler below is refused."""
    raise _forbidden(f"{ctx.resource}.{ctx.action} is not allowed on this server")


@auth.on.threads.create
async def create_thread(ctx: Auth.types.AuthContext, value: Auth.types.on.threads.create.value) -> dict[str, str]:
    """A thread belongs to its creator."""
    me = _me(ctx)
    metadata = value.setdefault("metadata", {})
    metadata["owner"] = me
    return {"owner": me}


@auth.on.threads.create_run
async def create_run(ctx: Auth.types.AuthContext, value: Auth.types.on.threads.create_run.value) -> dict[str, str]:
    """A run on one's own thread (or a new one), never naming another user."""
    me = _me(ctx)
    kwargs = value.get("kwargs") or {}
    for where in ("context", "config"):
        section = kwargs.get(where) or {}
        if where == "config":
            section = section.get("configurable") or {}
        named = section.get("user_id") if isinstance(section, Mapping) else None
        if named not in (None, "", me):
            raise _forbidden("a run is for the authenticated user; its context may not name another")
    metadata = value.setdefault("metadata", {})
    metadata["owner"] = me
    return {"owner": me}


@auth.on.threads.read
@auth.on.threads.delete
@auth.on.threads.search
async def own_threads(ctx: Auth.types.AuthContext, value: Any) -> dict[str, str]:
    """Only one's own threads (and their runs and state) are visible."""
    return {"owner": _me(ctx)}


@auth.on.threads.update
async def update_own_thread(ctx: Auth.types.AuthContext, value: Auth.types.on.threads.update.value) -> dict[str, str]:
    """Only one's own threads change, and they stay one's own (no handing a thread to another user)."""
    me = _me(ctx)
    if isinstance(value.get("metadata"), dict) and "owner" in value["metadata"]:
        value["metadata"]["owner"] = me
    return {"owner": me}


@auth.on.assistants.read
@auth.on.assistants.search
async def read_assistants(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Assistants are the deployment's configuration, readable by every user."""
    _me(ctx)


@auth.on.store
async def own_store_namespaces(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    """Every store operation stays inside namespaces whose second label is the caller's."""
    label = user_label(_me(ctx))
    namespace = tuple(value.get("namespace") or ())
    if ctx.action == "list_namespaces":
        # List the caller's namespaces under any root: ("*", label, ...).
        if len(namespace) < 2:
            namespace = (*(namespace or ("*",)), label)
        elif namespace[1] == "*":
            namespace = (namespace[0], label, *namespace[2:])
        value["namespace"] = namespace
    elif ctx.action == "search" and len(namespace) == 1:
        namespace = (namespace[0], label)  # ("personalize",) searches the caller's own items
        value["namespace"] = namespace
    if len(namespace) < 2 or namespace[1] != label:
        raise _forbidden("a store namespace must be (root, <your user label>, ...)")
