"""The Admin tab's Create user against anything a client can send (issue 11: ≥500 examples).

The caller is mostly root (the administrator), sometimes bob (not one), a browser without a session
or with a forged cookie; the name, password, search and page are whatever a page posts. Checked:

- a caller who is not a signed-in, enabled administrator is refused and nothing changes;
- a bad or taken name, or a bad password, is a message and nothing changes;
- otherwise exactly one account appears, a user (never an administrator), with the starting
  balance as its only ledger entry, the password that was typed, and one audit row naming root.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemma_chat.accounts import auth
from gemma_chat.billing import ledger
from gemma_chat.store.db import database
from gemma_chat.errors import PermissionDeniedError, ValidationError
from gemma_chat.ui import ChatApp
from tests.test_admin_users_fuzz import FUZZ, AccountActions, anything, hostile_text, mostly, world_rows

pytestmark = pytest.mark.slow


@pytest.fixture
def app(settings, database):
    for name in ("root", "bob", "carol"):
        auth.register_user(settings, name, "long enough pw")  # root first: the administrator
    return ChatApp(settings, engine=None)


names = mostly(st.from_regex(r"[A-Za-z0-9._-]{3,12}", fullmatch=True), st.one_of(
    hostile_text, anything, st.sampled_from(["bob", "BOB", " carol ", "ab", "x" * 33, "new user"]),
))
passwords = mostly(st.from_regex(r"[ -~]{8,30}", fullmatch=True), st.one_of(hostile_text, anything))


def test_create_user_makes_exactly_the_account_asked_for_or_nothing(app, settings):
    actions = AccountActions(app, settings)  # its sessions and callers: the same browsers as the other actions
    seen = {"created": 0, "refused": 0, "not an admin": 0}

    @FUZZ
    @given(
        caller=mostly(st.just("root"), st.sampled_from(["bob", "nobody", "forged"]), 80),
        name=names, password=passwords, search=mostly(st.just(""), anything), page=mostly(st.just(1), anything),
    )
    def example(caller, name, password, search, page):
        actions.start(lock_carol=False)
        request = actions.request_of(caller)
        before = world_rows()
        if caller != "root":
            with pytest.raises(PermissionDeniedError):
                app.create_account(request, name, password, search, page)
            assert world_rows() == before
            seen["not an admin"] += 1
            return
        try:
            wanted = auth.validate_username(name)
            auth.validate_password(password)
            valid = auth.find_user(wanted) is None
        except ValidationError:
            valid = False
        shown = app.create_account(request, name, password, search, page)
        message = shown.get("users_message") or shown.get("create_user_message")  # a refusal: in the dialog, kept open
        assert isinstance(message, str) and message.strip() and "Something went wrong" not in message
        assert shown["new_user_password"] == ""  # the typed password never stays on the page
        if not valid:
            assert message.startswith("⚠"), message
            assert world_rows() == before
            seen["refused"] += 1
            return
        after = world_rows()
        made = auth.find_user(wanted)
        assert made is not None and made.username == wanted and not made.is_admin and not made.is_disabled
        assert [row for row in after["users"] if row[0] != made.id] == before["users"]
        assert auth.password_matches(password, made.password_hash)
        assert made.balance == settings.starting_balance and made.held == 0
        assert after["actions"] == before["actions"] + 1
        assert database.execute_sql(
            "SELECT actor_name, action, target_id FROM admin_actions ORDER BY id DESC LIMIT 1"
        ).fetchone() == ("root", "create_user", made.id)
        seen["created"] += 1

    example()
    assert seen["created"] >= 60 and seen["refused"] >= 50 and seen["not an admin"] >= 50, seen
    assert sum(seen.values()) >= 500 and ledger.verify_ledger() == []
