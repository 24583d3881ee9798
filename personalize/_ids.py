"""User id validation and the on-disk names derived from user ids.

User ids arrive from host applications (often from HTTP requests), so they are
treated as hostile: a bounded, conservative alphabet, and on-disk names derived
from a hash so that no id can name a path outside the data directory, and two
ids that differ only by case never share a folder on case-insensitive file
systems.
"""

from __future__ import annotations

import hashlib
import re

from .errors import InvalidUserIdError

__all__ = ["MAX_USER_ID_LENGTH", "user_dir_name", "validate_user_id"]

MAX_USER_ID_LENGTH = 128
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")


def validate_user_id(user_id: object) -> str:
    """Return ``user_id`` unchanged if it is a safe user id, else raise.

    Allowed: 1 to 128 characters from ``A-Z a-z 0-9 . _ @ + -``, starting with a
    letter or digit, never containing ``..``.

    Raises:
        InvalidUserIdError: the id is not a string, is empty, too long, or has a
            character outside the allowed set (separators, NUL, whitespace...).
    """
    if not isinstance(user_id, str):
        raise InvalidUserIdError(f"user id must be a str, not {type(user_id).__name__}")
    if not user_id:
        raise InvalidUserIdError("user id must not be empty")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise InvalidUserIdError(
            f"user id is {len(user_id)} characters long; the limit is {MAX_USER_ID_LENGTH}"
        )
    if not _USER_ID.fullmatch(user_id) or ".." in user_id:
        # Do not echo the id: it may carry control characters or personal data.
        raise InvalidUserIdError(
            "user id may only contain letters, digits and . _ @ + - "
            "(starting with a letter or digit, no '..')"
        )
    return user_id


def user_dir_name(user_id: str) -> str:
    """The folder name used for ``user_id``'s derived files (a hash, never the id)."""
    validate_user_id(user_id)
    return "u" + hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:32]
