"""User ids in LangGraph namespace labels: a reversible encoding.

LangGraph refuses ``.`` in namespace labels (its HTTP API joins a namespace
with dots), while a user id may hold dots (``alice@example.com``, ``a.b``).
So the label of a user is its id with every ``.`` written ``%2E``::

    user_label("alice@example.com") == "alice@example%2Ecom"
    user_from_label("alice@example%2Ecom") == "alice@example.com"
    user_label("bob") == "bob"                 # ids without a dot are unchanged

``%`` is not a character a user id may hold, so the encoding is unambiguous,
and every user has exactly one label: a label that is not the canonical
encoding of a valid id (``%2e``, ``a%2Eb%2E``...) is refused, so two labels can
never name the same user (the server's authorization compares labels).
"""

from __future__ import annotations

from personalize._ids import validate_user_id
from personalize.errors import InvalidUserIdError

__all__ = ["user_from_label", "user_label"]

_DOT = "%2E"


def user_label(user_id: str) -> str:
    """The namespace label of ``user_id`` (validated): its dots written ``%2E``.

    Raises:
        InvalidUserIdError: ``user_id`` is not a valid user id.
    """
    return validate_user_id(user_id).replace(".", _DOT)


def user_from_label(label: str) -> str:
    """The user id a namespace label names (the inverse of :func:`user_label`).

    Raises:
        InvalidUserIdError: the label is not the canonical label of a valid user id.
    """
    if not isinstance(label, str):
        raise InvalidUserIdError(f"a namespace label must be a str, not {type(label).__name__}")
    if "." in label:
        raise InvalidUserIdError("write the dots of a user id as %2E in a namespace label (see user_label)")
    user_id = validate_user_id(label.replace(_DOT, "."))
    if user_label(user_id) != label:
        raise InvalidUserIdError("not the canonical namespace label of a user id (see user_label)")
    return user_id
