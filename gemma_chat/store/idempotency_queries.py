"""The idempotent_requests table: /v1 Idempotency-Keys claimed, answered, taken over and forgotten."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Iterator

from .db import IdempotentRequest, database, dialect


def _one_key(user_id: int, key: str):
    return (IdempotentRequest.user == user_id) & (IdempotentRequest.key == key)


@contextlib.contextmanager
def lock_user_keys(user_id: int) -> Iterator[None]:
    """Claim the user's keys alone among every process (inside a transaction, until it ends).

    Two first claims of one key would otherwise both find no row and both insert (PostgreSQL;
    SQLite's writer lock already serializes).
    """
    with dialect().exclusive(database, f"idempotency:{user_id}"):
        yield


def find_key(user_id: int, key: str) -> IdempotentRequest | None:
    return IdempotentRequest.get_or_none(_one_key(user_id, key))


def insert_key(user_id: int, key: str, body_hash: str, created_at: dt.datetime) -> None:
    """A claim of the key by a request that runs now (no response yet)."""
    IdempotentRequest.insert(user=user_id, key=key, body_hash=body_hash, created_at=created_at).execute()


def restamp_key(user_id: int, key: str, created_at: dt.datetime) -> None:
    """Take an abandoned claim over: its age starts again from `created_at`."""
    IdempotentRequest.update(created_at=created_at).where(_one_key(user_id, key)).execute()


def keep_response(user_id: int, key: str, request_id: str | None, status_code: int, response_json: str) -> None:
    IdempotentRequest.update(request_id=request_id, status_code=status_code, response=response_json).where(
        _one_key(user_id, key)
    ).execute()


def delete_key(user_id: int, key: str) -> None:
    IdempotentRequest.delete().where(_one_key(user_id, key)).execute()


def delete_answered_keys_before(cutoff: dt.datetime) -> None:
    """Forget the keys answered and made before `cutoff` (a running claim is kept)."""
    IdempotentRequest.delete().where(
        (IdempotentRequest.created_at < cutoff) & IdempotentRequest.response.is_null(False)
    ).execute()
