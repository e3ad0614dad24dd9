"""API keys: how a script or editor signs in to /v1 as a user, without a password or a cookie.

A key is shown once when it is made and stored only as its sha256, so a copy of the database opens
no account. A revoked key, and every key of a disabled user, stops working on the next request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from ..store import account_queries, key_queries
from ..store.db import ApiKey, User, transaction, utcnow
from ..errors import UnknownUserError, ValidationError

KEY_PREFIX = "gck_"
MAX_LABEL_CHARS = 64
SHOWN_PREFIX_CHARS = 12  # "gck_" and 8 random characters: enough to tell keys apart, not to guess one
# last_used_at is written at most this often: a busy script must not cost a write per request.
TOUCH_EVERY_S = 60


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def validate_label(label) -> str:
    if label is None:
        return ""
    if not isinstance(label, str):
        raise ValidationError("A key's name must be text.")
    label = label.strip()
    if len(label) > MAX_LABEL_CHARS:
        raise ValidationError("A key's name is at most {n} characters.", n=MAX_LABEL_CHARS)
    if any(ord(c) < 32 or c == "\x7f" for c in label):
        raise ValidationError("A key's name cannot contain control characters.")
    return label


def create_key(user_id: int, label=None) -> tuple[ApiKey, str]:
    """A new key for the user: the stored row and the plaintext, which is never available again."""
    label = validate_label(label)
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction():
        if account_queries.find_user_by_id(user_id) is None:
            raise UnknownUserError("No user with id {user_id}.", user_id=user_id)
        row = key_queries.insert_key(user_id, label, hash_key(plaintext), plaintext[:SHOWN_PREFIX_CHARS], utcnow())
    return row, plaintext


def list_keys(user_id: int, *, include_revoked: bool = False) -> list[ApiKey]:
    return key_queries.list_keys_of_user(user_id, include_revoked=include_revoked)


def revoke_key(key_id: int, *, user_id: int | None = None) -> ApiKey:
    """End a key. With `user_id`, only that user's own key (the Account tab); the CLI passes none."""
    with transaction():
        row = key_queries.find_key(key_id, user_id=user_id)
        if row is None:
            raise ValidationError("No API key with id {key_id}.", key_id=key_id)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            key_queries.update_key_revoked(row.id, row.revoked_at)
    return row


def resolve_key(plaintext, *, now: dt.datetime | None = None) -> User | None:
    """The active, enabled user a key belongs to; None for anything else (unknown, revoked, disabled)."""
    if not isinstance(plaintext, str) or not plaintext.startswith(KEY_PREFIX) or not 20 <= len(plaintext) <= 100:
        return None
    row = key_queries.find_key_by_hash(hash_key(plaintext))
    if row is None or row.revoked_at is not None or row.user.is_disabled:
        return None
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at > dt.timedelta(seconds=TOUCH_EVERY_S):
        with transaction():
            key_queries.touch_key(row.id, now)
    return row.user
