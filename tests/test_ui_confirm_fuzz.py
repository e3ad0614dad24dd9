"""The Admin tab's "asks before it acts" step (ui/admin/users.py ask_to_confirm) against anything a page
can post as the account: it never acts, never raises for an administrator, shows the name as typed
(forming no markdown) with exactly the one button that acts, and refuses anyone else with a popup."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import browser_request, signed_in_request
from gemma_chat.errors import PermissionDeniedError
from gemma_chat.store.db import database
from gemma_chat.ui import ChatApp
from gemma_chat.ui.admin.users import ACCOUNT_ACTIONS
from gemma_chat.ui.markup import as_literal

FUZZ = settings(
    max_examples=300, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.lists(st.text(max_size=5), max_size=3),
    st.text(st.characters(codec=None, categories=None), max_size=60),
    st.sampled_from(["", " ", "bob", "**bob**", "[x](javascript:alert(1))", "<img src=x>", "x" * 10_000]),
)


@pytest.fixture
def world(settings, database):
    app = ChatApp(settings, engine=None)
    root = signed_in_request(settings, "root")  # the first account: the administrator
    bob = signed_in_request(settings, "bob")
    return app, root, bob


def users_rows():
    return database.execute_sql("SELECT id, username, is_admin, is_disabled FROM users ORDER BY id").fetchall()


@FUZZ
@given(target=anything, action=st.sampled_from(ACCOUNT_ACTIONS), caller=st.sampled_from(["root", "bob", "nobody"]))
def test_asking_to_confirm_never_acts_and_offers_only_its_action(world, target, action, caller):
    app, root, bob = world
    before = users_rows()
    request = {"root": root, "bob": bob, "nobody": browser_request(None)}[caller]
    if caller != "root":
        with pytest.raises(PermissionDeniedError):  # a popup, once Screen.wire has wrapped it
            app.ask_to_confirm(request, target, action)
        assert users_rows() == before
        return
    shown = app.ask_to_confirm(request, target, action)
    assert users_rows() == before  # asking changes nothing
    name = target.strip() if isinstance(target, str) else ""
    offered = [n for n in ACCOUNT_ACTIONS if shown[f"{n}_confirm"].get("visible")]
    if not name:
        assert offered == [] and not shown["users_confirm"]["visible"] and shown["users_message"].startswith("⚠")
    else:
        assert offered == [action] and shown["users_confirm"]["visible"]
        assert shown["confirm_question"].endswith(f": {as_literal(name)}?")
