"""Idempotency-Key claims: one runner per (user, key), its result kept for replays, then forgotten."""

from __future__ import annotations

import datetime as dt

import pytest

from gemma_chat.accounts import auth
from gemma_chat.billing import idempotency
from gemma_chat.store.db import IdempotentRequest

pytestmark = pytest.mark.both_engines


def test_a_key_is_claimed_once_replayed_freed_after_a_failure_and_forgotten_after_a_day(settings, database):
    alice = auth.register_user(settings, "alice", "long enough pw")
    bob = auth.register_user(settings, "bob", "long enough pw")
    claim = lambda user, key, digest="h1": idempotency.claim_key(user.id, key, digest, stale_after_s=900)  # noqa: E731
    assert claim(alice, "k").state == "run"
    assert claim(alice, "k").state == "running"
    assert claim(alice, "k", "h2").state == "conflict"
    assert claim(bob, "k").state == "run"  # keys are per user
    idempotency.finish_key(alice.id, "k", "r1", 200, {"id": "chatcmpl-r1"})
    assert claim(alice, "k") == idempotency.Claim("done", 200, {"id": "chatcmpl-r1"})
    idempotency.finish_key(bob.id, "k", "r2", 402, None)  # nothing charged: the key is free again
    assert claim(bob, "k").state == "run"
    from gemma_chat.store.db import utcnow

    IdempotentRequest.update(created_at=utcnow() - dt.timedelta(days=2)).execute()
    assert claim(alice, "k").state == "run"  # a day later the key is new
    assert claim(bob, "k").state == "run"  # a claim whose process died is taken over once stale
