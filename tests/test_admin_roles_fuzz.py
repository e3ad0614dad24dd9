"""The Admin tab's promote, demote and set-a-password actions against anything a client can send
(issue 11: ≥500 examples each), with the checks of test_admin_users_fuzz.py: only the named account
changes, as the action says; a refusal or a caller who is not an administrator changes nothing; one
audit row for each action that took effect; never the last enabled administrator demoted.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from test_admin_users_fuzz import FUZZ, AccountActions, app, each_once  # noqa: F401 (app: the fixture)

pytestmark = pytest.mark.slow


def test_promote_demote_and_set_password_change_only_the_named_account_as_they_say(app, settings):
    actions = AccountActions(app, settings)

    @FUZZ
    @given(steps=each_once(["promote", "demote", "set_password"]), lock_carol=st.just(False))
    def example(steps, lock_carol):
        actions.start(lock_carol)
        for one in steps:
            actions.act(**one)

    example()
    actions.check_totals(["promote", "demote", "set_password"])
