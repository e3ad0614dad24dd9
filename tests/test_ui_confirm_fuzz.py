"""The Users table's row menus (ui/admin/users.py) against anything a page can post: the request a menu's
click sends ("disable:12"), and the State its dialog's button sends back.

Asking never acts and never raises for an administrator: it opens the dialog only for an action that
applies to an account that exists, naming the account as typed (forming no markdown), and says anything
else inline; anyone else is refused with a popup. Confirming acts only on the question this
administrator was asked, on the account as it is then; any other State changes nothing and is said inline.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import browser_request, signed_in_request
from gemma_chat.accounts import admin
from gemma_chat.errors import NotLoggedInError, PermissionDeniedError
from gemma_chat.store.db import database
from gemma_chat.ui import ChatApp, owned
from gemma_chat.ui.admin.users import ROW_ACTIONS, offered_actions
from gemma_chat.ui.markup import as_literal
from gemma_chat.ui.row_menu import parse_request

FUZZ = settings(
    max_examples=300, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.lists(st.text(max_size=5), max_size=3),
    st.text(st.characters(codec=None, categories=None), max_size=60),
    st.sampled_from(["", " ", "disable", "disable:", ":1", "disable:1:", "disable:١", "disable:+1", "x" * 10_000]),
)


@pytest.fixture
def world(settings, database):
    app = ChatApp(settings, engine=None)  # the Users section never generates
    root = signed_in_request(settings, "root")  # the first account: the administrator
    bob = signed_in_request(settings, "bob")
    carol = signed_in_request(settings, "carol")
    admin.set_disabled(None, "carol", True)
    ids = [root.user_id, bob.user_id, carol.user_id, 0, 999, 2**63, 10**30]
    requests = st.one_of(
        st.tuples(st.sampled_from(ROW_ACTIONS + ("open", "delete", "DISABLE", "")), st.sampled_from(ids))
        .map(lambda drawn: f"{drawn[0]}:{drawn[1]}:7"),
        anything,
    )
    return app, root, bob, requests


def mostly(usual, rare):
    """`usual` two times in three (a plain one_of would flatten `rare`'s many branches and draw it mostly)."""
    return st.integers(0, 2).flatmap(lambda n: rare if n == 0 else usual)


def world_rows():
    return (
        database.execute_sql("SELECT id, username, is_admin, is_disabled, password_hash, balance FROM users ORDER BY id").fetchall(),
        database.execute_sql("SELECT COUNT(*) FROM admin_actions").fetchone()[0],
    )


def test_asking_never_acts_and_opens_the_dialog_only_for_what_applies(world):
    app, root, bob, requests = world

    @FUZZ
    @given(value=requests, caller=st.sampled_from(["root", "root", "root", "bob", "nobody"]))
    def ask(value, caller):
        before = world_rows()
        if caller != "root":
            with pytest.raises((PermissionDeniedError, NotLoggedInError)):  # a popup, once Screen.wire has wrapped it
                app.account_request(bob if caller == "bob" else browser_request(None), value, "", 1)
            assert world_rows() == before
            return
        shown = app.account_request(root, value, "", 1)
        assert world_rows() == before  # asking changes nothing
        action, user_id = parse_request(value, ROW_ACTIONS)
        row = admin.find_account(user_id) if user_id is not None else None
        if row is not None and action in offered_actions(row):
            assert shown["account_dialog"]["visible"] and shown["users_message"] == ""
            assert f"**{as_literal(row.username)}**" in shown["account_question"]
            assert shown["account_target"] == owned(root.user_id, [action, row.id])
            assert shown["grant_fields"]["visible"] == (action == "grant")
            assert shown["admin_password"]["visible"] == (action == "set_password")
        else:
            assert not shown["account_dialog"]["visible"] and shown["account_target"] == owned(root.user_id, [])
            assert shown["users_message"].startswith("⚠ ") and "users_table" in shown

    ask()


def test_confirming_acts_only_on_the_question_this_administrator_was_asked(world):
    app, root, bob, requests = world
    # Never root: disabling or demoting it would end the test's session. Mostly bob, sometimes nobody.
    others = [bob.user_id, bob.user_id, bob.user_id, root.user_id + bob.user_id + 100]
    asked_here = st.tuples(st.sampled_from(ROW_ACTIONS), st.sampled_from(others)).map(lambda drawn: owned(root.user_id, list(drawn)))
    forged = st.one_of(
        st.tuples(st.sampled_from(ROW_ACTIONS), st.sampled_from(others)).map(lambda drawn: owned(bob.user_id, list(drawn))),
        st.lists(anything, max_size=3).map(lambda rows: owned(root.user_id, rows)),
        st.fixed_dictionaries({"user_id": st.sampled_from([root.user_id, str(root.user_id)]), "rows": anything}),
        anything,
    )
    seen = {"acted": 0, "refused": 0, "forged": 0}

    @FUZZ
    @given(
        state=mostly(asked_here, forged), amount=mostly(st.integers(-5, 5), anything), note=mostly(st.just("why"), anything),
        password=mostly(st.just("long enough pw"), anything),
    )
    def confirm(state, amount, note, password):
        before = world_rows()
        shown = app.confirm_account_action(root, state, amount, note, password, "", 1)
        after = world_rows()
        message = shown.get("users_message") or shown.get("account_dialog_message")
        assert isinstance(message, str) and message.strip() and "Something went wrong" not in message
        assert shown.get("admin_password", "") in ("", {"__type__": "update", "value": "", "visible": False})
        question = state.get("rows") if isinstance(state, dict) and state.get("user_id") == root.user_id else None
        row = admin.find_account(question[1]) if question in [[a, i] for a in ROW_ACTIONS for i in others] else None
        if row is None:
            assert after == before and message.startswith("⚠ ")
            seen["forged"] += 1
        elif after[1] == before[1] + 1:  # one audit row: done, the dialog closed
            assert not message.startswith("⚠") and not shown["account_dialog"]["visible"]
            seen["acted"] += 1
        else:  # refused: a grant's amount or note, a password, an action that no longer applies
            assert after == before and message.startswith("⚠ ")
            seen["refused"] += 1

    confirm()
    assert min(seen.values()) >= 20, seen
