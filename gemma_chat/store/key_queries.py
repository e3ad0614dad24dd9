"""API keys in the database: the api_keys rows, found by id or by the sha256 of a key (accounts/keys.py)."""

from __future__ import annotations

import datetime as dt

from .db import ApiKey, User


def insert_key(user_id: int, label: str, key_hash: str, prefix: str, created_at: dt.datetime) -> ApiKey:
    return ApiKey.create(user=user_id, label=label, key_hash=key_hash, prefix=prefix, created_at=created_at)


def list_keys_of_user(user_id: int, *, include_revoked: bool) -> list[ApiKey]:
    """The user's keys, oldest first."""
    query = ApiKey.select().where(ApiKey.user == user_id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_null())
    return list(query.order_by(ApiKey.created_at, ApiKey.id))


def find_key(key_id: int, *, user_id: int | None = None) -> ApiKey | None:
    """The key of this id; with `user_id`, only if it is that user's."""
    query = ApiKey.select().where(ApiKey.id == key_id)
    if user_id is not None:
        query = query.where(ApiKey.user == user_id)
    return query.first()


def update_key_revoked(key_id: int, revoked_at: dt.datetime) -> None:
    ApiKey.update(revoked_at=revoked_at).where(ApiKey.id == key_id).execute()


def find_key_by_hash(key_hash: str) -> ApiKey | None:
    """The key with its user read in the same query (`.user`)."""
    return ApiKey.select(ApiKey, User).join(User).where(ApiKey.key_hash == key_hash).first()


def touch_key(key_id: int, now: dt.datetime) -> None:
    ApiKey.update(last_used_at=now).where(ApiKey.id == key_id).execute()
