"""Idempotency-Key for /v1: a retried request with the same key and body gets the first response.

The first request claims (user, key) before it runs; its final response is kept when it succeeds.
A failed first request (nothing charged) gives the key up, so a retry runs afresh. A claim left by
a crash is taken over once older than the stale-hold age.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from ..store import idempotency_queries
from ..store.db import transaction, utcnow
from ..errors import ValidationError

MAX_KEY_CHARS = 255
KEEP_S = 24 * 3600  # a key is remembered this long (as Stripe's are); then it may be used afresh


def validate_key(key) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS or not key.isascii() or not key.isprintable():
        raise ValidationError(f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable ASCII characters.")
    return key


def body_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    state: str  # run (this request owns the key) | done (replay `response`) | running | conflict
    status_code: int | None = None
    response: dict | None = None


def claim_key(user_id: int, key: str, digest: str, *, stale_after_s: float) -> Claim:
    now = utcnow()
    # One claim of a user's keys at a time across processes (the lock says why).
    with transaction(), idempotency_queries.lock_user_keys(user_id):
        row = idempotency_queries.find_key(user_id, key)
        if row is not None and row.response is not None and now - row.created_at > dt.timedelta(seconds=KEEP_S):
            idempotency_queries.delete_key(user_id, key)
            row = None
        if row is None:
            idempotency_queries.insert_key(user_id, key, digest, now)
            # Old keys are dead weight: sweep them when a key is claimed.
            idempotency_queries.delete_answered_keys_before(now - dt.timedelta(seconds=KEEP_S))
            return Claim("run")
        if row.body_hash != digest:
            return Claim("conflict")
        if row.response is not None:
            return Claim("done", row.status_code, json.loads(row.response))
        if now - row.created_at > dt.timedelta(seconds=stale_after_s):  # its process died: take it over
            idempotency_queries.restamp_key(user_id, key, now)
            return Claim("run")
        return Claim("running")


def finish_key(user_id: int, key: str, request_id: str | None, status_code: int, response: dict | None) -> None:
    """Keep a successful response for replays; give the key up after a failure that charged nothing."""
    with transaction():
        if status_code == 200 and response is not None:
            idempotency_queries.keep_response(user_id, key, request_id, status_code, json.dumps(response))
        else:
            idempotency_queries.delete_key(user_id, key)
