"""Who a served request or run is for: the authenticated identity, never the request body.

Shared by the auth module (``auth.py``, which the LangGraph server loads by path)
and the served graph (``studio.py``), so both map an identity to a user id the
same way:

- an identity returned by ``auth.py``'s authenticate handler is the user id
  itself (validated);
- a LangGraph Studio user (``is_studio_user``: ``langgraph dev`` lets any
  request that says ``x-auth-scheme: langsmith`` in as one) is the demo user in
  demo mode, and nobody otherwise;
- no identity at all is the demo user in demo mode, and refused otherwise.

Demo mode is off unless ``PERSONALIZE_DEMO_MODE`` is ``1``/``true``/``yes``/``on``;
the demo user is ``$PERSONALIZE_STUDIO_USER`` (default ``alice``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from personalize._ids import validate_user_id
from personalize.errors import ConfigError

__all__ = ["IdentityError", "demo_mode", "demo_user", "run_user_id", "user_id_of"]

_TRUE = {"1", "true", "yes", "on"}


class IdentityError(ConfigError):
    """A request or run carries no identity that maps to a user."""


def demo_mode() -> bool:
    """Whether ``PERSONALIZE_DEMO_MODE`` turns the demo mode on (read at each call)."""
    return os.environ.get("PERSONALIZE_DEMO_MODE", "").strip().lower() in _TRUE


def demo_user() -> str:
    """The demo user (``$PERSONALIZE_STUDIO_USER``, default ``alice``), validated."""
    return validate_user_id(os.environ.get("PERSONALIZE_STUDIO_USER") or "alice")


def _is_studio_user(user: Any) -> bool:
    from langgraph_sdk.auth import is_studio_user

    return is_studio_user(user) or (isinstance(user, Mapping) and user.get("kind") == "StudioUser")


def user_id_of(user: Any) -> str:
    """The user id of an authenticated user object (or ``None`` for no identity).

    Raises:
        IdentityError: no identity outside demo mode, or a Studio user outside demo mode.
        InvalidUserIdError: the identity is not a valid user id.
    """
    if user is None:
        if demo_mode():
            return demo_user()
        raise IdentityError("this server serves authenticated users only (no identity)")
    if _is_studio_user(user):
        if demo_mode():
            return demo_user()
        raise IdentityError("LangGraph Studio's anonymous user is let in only in demo mode (PERSONALIZE_DEMO_MODE=1)")
    identity = user.get("identity") if isinstance(user, Mapping) else getattr(user, "identity", None)
    if not identity:
        raise IdentityError("the authenticated user has no identity")
    return validate_user_id(identity)


def run_user_id(config: Mapping[str, Any] | None) -> str:
    """The user of a run: the identity the server put in ``config["configurable"]``.

    The LangGraph server sets ``langgraph_auth_user`` from the request's
    credentials and strips that key from anything a caller sends, so it cannot
    be forged through the run's input, context or config.

    Raises:
        IdentityError: the run carries no identity (and demo mode is off).
    """
    configurable = (config or {}).get("configurable") or {}
    return user_id_of(configurable.get("langgraph_auth_user"))
