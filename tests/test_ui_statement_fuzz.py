"""The Top up tab's statement pages against anything a page (or a script reusing its session) can
send (issue 11: ≥500 examples): first, previous and next, each in every example.

Checked: a caller without a live session is refused and sees nothing; a signed-in caller always gets
a real page of their own statement (a page past either end shows the nearest one), never anyone
else's entries, and nothing in the database changes.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import browser_request, signed_in_request
from gemma_chat.billing import ledger, statement
from gemma_chat.errors import GemmaChatError
from gemma_chat.ui import ChatApp
from tests.test_admin_users_fuzz import FUZZ, anything, hostile_text, mostly

pytestmark = pytest.mark.slow
PAGE_SIZE = 3


@pytest.fixture
def app(settings, database):
    import dataclasses

    return ChatApp(dataclasses.replace(settings, history_page_size=PAGE_SIZE), engine=None)


def books() -> tuple:
    from gemma_chat.store.db import database

    return database.execute_sql("SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM ledger_entries").fetchone()


def test_statement_pages_show_only_the_callers_entries_and_change_nothing(app, settings):
    alice = signed_in_request(settings, "alice")
    bob = signed_in_request(settings, "bob")
    for amount in range(1, 10):  # alice: 10 entries, 4 pages of 3; bob: his signup only
        ledger.top_up(alice.user_id, amount, maximum=1000)
    alice_pages = statement.list_statement(alice.user_id, 1, PAGE_SIZE).total_pages
    callers = {"alice": alice, "bob": bob, "nobody": browser_request(None),
               "forged": browser_request("a forged token of the right length.....")}
    seen = {"first": 0, "previous": 0, "next": 0, "refused": 0}

    @FUZZ
    @given(
        order=st.permutations(["first", "previous", "next"]),
        caller=mostly(st.sampled_from(["alice", "bob"]), st.sampled_from(["nobody", "forged"]), 85),
        page=mostly(st.integers(-3, 8), st.one_of(hostile_text, anything, st.just(2**70))),
    )
    def example(order, caller, page):
        request = callers[caller]
        before = books()
        for handler in order:
            call = {
                "first": lambda: app.statement_first(request),
                "previous": lambda: app.statement_previous(request, page),
                "next": lambda: app.statement_next(request, page),
            }[handler]
            if caller in ("nobody", "forged"):
                with pytest.raises(GemmaChatError):
                    call()
                seen["refused"] += 1
                continue
            shown = call()
            pages = alice_pages if caller == "alice" else 1
            assert 1 <= shown["statement_page_state"] <= pages
            assert shown["statement_label"].startswith(f"Page {shown['statement_page_state']} of {pages}")
            expected = statement.list_statement(request.user_id, shown["statement_page_state"], PAGE_SIZE).entries
            table = shown["statement_table"]
            assert len(table) == len(expected) and [int(v) for v in table.iloc[:, -1]] == [e.balance_after for e in expected]
            seen[handler] += 1
        assert books() == before

    example()
    assert min(seen.values()) >= 70 and sum(seen.values()) >= 1500, seen
