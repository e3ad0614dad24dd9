"""Server-side sessions: tokens stored hashed, idle and absolute expiry, revocation."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from conftest import live_sessions

from gemma_chat.accounts import admin, auth, sessions
from gemma_chat.store.db import WebSession, utcnow

pytestmark = pytest.mark.both_engines


def new_user(settings, name="alice"):
    return auth.register_user(settings, name, "long enough pw")


def test_a_token_resolves_to_its_user_and_is_stored_only_hashed(settings, database):
    user = new_user(settings)
    token = sessions.create_session(settings, user.id)
    assert len(token) >= 40
    assert sessions.resolve_session(settings, token).user.id == user.id
    assert WebSession.get().token_hash == sessions.hash_token(token) != token
    assert sessions.resolve_session(settings, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    for junk in [None, "", "x", 123, "a" * 500, "\ud800" * 30]:
        assert sessions.resolve_session(settings, junk) is None


def test_idle_and_absolute_expiry(settings, database):
    user = new_user(settings)
    start = utcnow()
    token = sessions.create_session(settings, user.id, now=start)
    idle = dt.timedelta(seconds=settings.session_idle_s)
    assert sessions.resolve_session(settings, token, now=start + idle - dt.timedelta(seconds=1))
    assert sessions.resolve_session(settings, token, now=start + 2 * idle) is None  # idle too long
    # Used often, it still ends at its absolute age.
    short = dataclasses.replace(settings, session_max_age_s=3 * settings.session_idle_s)
    token = sessions.create_session(short, user.id, now=start)
    moment = start
    while moment < start + dt.timedelta(seconds=short.session_max_age_s - 60):
        assert sessions.resolve_session(short, token, now=moment), moment
        moment += idle / 2
    assert sessions.resolve_session(short, token, now=start + dt.timedelta(seconds=short.session_max_age_s)) is None


def test_a_timer_tick_does_not_extend_a_session(settings, database):
    user = new_user(settings)
    start = utcnow()
    token = sessions.create_session(settings, user.id, now=start)
    half = dt.timedelta(seconds=settings.session_idle_s * 0.6)
    assert sessions.resolve_session(settings, token, touch=False, now=start + half)
    assert sessions.resolve_session(settings, token, now=start + 2 * half) is None


def test_revocation_one_and_all(settings, database):
    alice, bob = new_user(settings), new_user(settings, "bob")
    laptop, phone, other = (sessions.create_session(settings, u.id) for u in (alice, alice, bob))
    assert sessions.revoke_session(laptop) and not sessions.revoke_session(laptop)
    assert sessions.resolve_session(settings, laptop) is None and sessions.resolve_session(settings, phone)
    laptop = sessions.create_session(settings, alice.id)
    assert sessions.revoke_user_sessions(alice.id) == 2
    assert sessions.resolve_session(settings, phone) is None and sessions.resolve_session(settings, laptop) is None
    assert sessions.resolve_session(settings, other).user.username == "bob"


def test_account_changes_end_every_session(settings, database):
    user = new_user(settings)
    for change in [
        lambda: admin.reset_password(settings, None, "alice", "another long password"),
        lambda: admin.set_disabled(None, "alice", True),
        lambda: admin.set_admin(None, "alice", False),  # alice is the first account: an admin
    ]:
        admin.set_disabled(None, "alice", False)
        admin.set_admin(None, "alice", True)
        token = sessions.create_session(settings, user.id)
        change()
        assert sessions.resolve_session(settings, token) is None
    token = sessions.create_session(settings, user.id)
    admin.set_admin(None, "alice", True)  # a promotion keeps the session
    assert live_sessions(user.id, settings) == 1


def test_a_disabled_user_resolves_to_nobody_even_with_an_old_session(settings, database):
    user = new_user(settings)
    token = sessions.create_session(settings, user.id)
    WebSession.update(revoked_at=None).execute()
    from gemma_chat.store.db import User

    User.update(is_disabled=True).execute()  # as an older version or a direct edit would leave it
    assert sessions.resolve_session(settings, token) is None


def test_the_edges_cheap_check_agrees_with_resolve_session(settings, database):
    """has_live_session (the queue's door, on every request) says what resolve_session says."""
    from gemma_chat.store.db import User

    def agree(token, now=None) -> bool:
        cheap = sessions.has_live_session(settings, token, now=now)
        assert cheap == (sessions.resolve_session(settings, token, touch=False, now=now) is not None), (token, now)
        return cheap

    alice = new_user(settings)
    start = utcnow()
    token = sessions.create_session(settings, alice.id, now=start)
    idle = dt.timedelta(seconds=settings.session_idle_s)
    assert agree(token, start + idle - dt.timedelta(seconds=1))
    assert not agree(token, start + idle + dt.timedelta(seconds=1))  # idle too long
    assert not agree(token, start + dt.timedelta(seconds=settings.session_max_age_s))  # past its age
    for junk in [None, "", "x", 123, "a" * 500, "\ud800" * 30, token[:-1] + ("A" if token[-1] != "A" else "B")]:
        assert not agree(junk)
    live = sessions.create_session(settings, alice.id)
    assert agree(live)
    User.update(is_disabled=True).where(User.id == alice.id).execute()
    assert not agree(live)  # a disabled user
    User.update(is_disabled=False).where(User.id == alice.id).execute()
    assert agree(live)
    sessions.revoke_session(live)
    assert not agree(live)  # logged out
