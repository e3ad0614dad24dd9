"""The Account tab's Change password against anything a client can send (issue 11: ≥500 examples).

The current and new password are whatever a page (or a script reusing its session) posts; the caller
may have no session or a forged one. Whatever comes in: an answer under the form, never an exception,
both password boxes cleared, and a change only when the current password was right and the new one
valid; then the caller's other browsers are signed out and this one is not. Nothing of bob changes,
and no administrator action is recorded for a change of one's own password.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import browser_request, fuzz_examples, live_sessions, signed_in_request
from gemma_chat.accounts import auth, sessions
from gemma_chat.store.db import AdminAction, User, WebSession, database
from gemma_chat.ui import ChatApp

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=fuzz_examples(500), deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=100),
    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
hostile_text = st.one_of(
    st.text(st.characters(codec=None, categories=None), max_size=40),  # every code point, surrogates too
    st.sampled_from(["", " ", "short", "\x00" * 9, "a\x00bcdefgh", "\ud800long enough", "é" * 37, "🎉" * 19, "x" * 100_000]),
)


def mostly(usual, rare, percent: int = 70):
    return st.integers(0, 99).flatmap(lambda n: usual if n < percent else rare)


def accounts() -> list[tuple]:
    """Every account's row and every session's state: what a password change may touch."""
    users = database.execute_sql("SELECT id, username, password_hash, is_admin, is_disabled, balance FROM users ORDER BY id")
    web_sessions = database.execute_sql("SELECT id, user_id, revoked_at FROM sessions ORDER BY id")
    return [users.fetchall(), web_sessions.fetchall()]


def test_change_password_takes_any_input_and_changes_only_what_it_says(settings, database):
    app = ChatApp(settings, engine=None)  # no model: the Account tab never generates
    alice = signed_in_request(settings, "alice")
    bob = signed_in_request(settings, "bob")
    forged = browser_request("a forged token of the right length.....")
    known = {"password": "long enough pw"}  # alice's password as the test knows it
    seen = {"changed": 0, "refused": 0, "signed out": 0}

    @FUZZ
    @given(
        caller=mostly(st.just("alice"), st.sampled_from(["nobody", "forged"]), 85),
        current=mostly(st.sampled_from(["right", "right", "wrong"]), anything.map(lambda value: ("raw", value))),
        new=mostly(st.from_regex(r"[ -~]{8,30}", fullmatch=True), st.one_of(hostile_text, anything), 60),
        other_browsers=st.integers(0, 2),
    )
    def example(caller, current, new, other_browsers):
        for _ in range(other_browsers):  # alice is also signed in elsewhere
            sessions.create_session(settings, alice.user_id)
        request = {"alice": alice, "nobody": browser_request(None), "forged": forged}[caller]
        typed = known["password"] if current == "right" else "not her password" if current == "wrong" else current[1]
        before, actions = accounts(), AdminAction.select().count()
        others_live = live_sessions(alice.user_id, settings) - 1
        bob_row = User.get_by_id(bob.user_id).password_hash, live_sessions(bob.user_id, settings)

        shown = app.change_password(request, typed, new)

        assert set(shown) == {"current_password", "new_password", "account_message"}
        assert shown["current_password"] == shown["new_password"] == ""  # nothing typed lingers on the page
        message = shown["account_message"]
        assert isinstance(message, str) and message.strip() and "Something went wrong" not in message
        assert AdminAction.select().count() == actions  # one's own password is not an administrator action
        assert (User.get_by_id(bob.user_id).password_hash, live_sessions(bob.user_id, settings)) == bob_row
        if message.startswith("⚠"):
            assert accounts() == before
            if caller != "alice":  # no cookie, or one that names no session
                assert message in ("⚠ Please log in.", "⚠ Your session has expired; please log in again.")
            seen["refused"] += 1
            return
        assert caller == "alice" and current == "right" and new != typed
        assert message == (f"Password changed. {others_live} other session{'s' if others_live != 1 else ''} signed out."
                           if others_live else "Password changed. No other session was signed in.")
        assert auth.password_matches(new, User.get_by_id(alice.user_id).password_hash)
        assert sessions.resolve_session(settings, alice.token, touch=False) is not None  # this browser stays signed in
        assert live_sessions(alice.user_id, settings) == 1  # the others are signed out
        after_users, _ = accounts()
        assert [row for row in after_users if row[0] != alice.user_id] == [row for row in before[0] if row[0] != alice.user_id]
        known["password"] = new
        seen["changed"] += 1
        seen["signed out"] += others_live

    example()
    assert seen["changed"] >= 100 and seen["refused"] >= 100 and seen["signed out"] >= 50, seen
    revoked = WebSession.select().where(WebSession.user == alice.user_id, WebSession.revoked_at.is_null(False)).count()
    assert revoked >= seen["signed out"]
