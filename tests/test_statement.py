"""A user's statement: paging over every entry, totals by kind, and a CSV with that user's rows only."""

from __future__ import annotations

import csv
import io

import pytest

from gemma_chat.accounts import auth
from gemma_chat.billing import ledger
from gemma_chat.errors import ValidationError
from gemma_chat.billing.statement import CSV_COLUMNS, KindTotal, list_statement, totals_by_kind, write_statement_csv

pytestmark = pytest.mark.both_engines


@pytest.fixture
def alice(settings, database):
    """10 credits at sign-up, 5 top-ups, an admin's grant and a correction, and 4 charged answers."""
    alice = auth.register_user(settings, "alice", "long enough pw")
    for amount in range(1, 6):
        ledger.top_up(alice.id, amount, maximum=100)
    ledger.grant_credits(alice.id, 20, actor_id=None, note="welcome back")
    ledger.grant_credits(alice.id, -2, actor_id=None, note="=HYPERLINK(\"http://evil.example\")")
    for _ in range(4):
        ledger.capture_hold(ledger.hold_credits(alice.id, 3).request_id)
    return alice


@pytest.fixture
def bob(settings, database, alice):
    bob = auth.register_user(settings, "bob", "long enough pw")
    ledger.top_up(bob.id, 77, maximum=100)
    return bob


def read_csv(user_id: int) -> list[dict]:
    out = io.StringIO()
    write_statement_csv(user_id, out)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def test_pages_walk_every_entry_newest_first_and_only_the_user_s(alice, bob):
    pages = [list_statement(alice.id, page, page_size=5) for page in (1, 2, 3)]
    assert [(p.page, p.total_pages, p.total) for p in pages] == [(1, 3, 12), (2, 3, 12), (3, 3, 12)]
    entries = [e for p in pages for e in p.entries]
    assert [e.kind for e in entries] == ["charge"] * 4 + ["grant"] * 2 + ["topup"] * 5 + ["signup"]
    assert [e.id for e in entries] == sorted((e.id for e in entries), reverse=True)
    assert {e.user_id for e in entries} == {alice.id}
    assert entries[0].balance_after == ledger.get_balance(alice.id).balance == 10 + 15 + 18 - 12
    assert list_statement(alice.id, 99, page_size=5).page == 3  # past the end: the last page
    assert [e.amount for e in list_statement(bob.id).entries] == [77, 10]
    with pytest.raises(ValidationError):
        list_statement(alice.id, "0")


def test_a_new_user_has_one_page_and_totals_that_add_up_to_the_balance(settings, database, alice):
    carol = auth.register_user(settings, "carol", "long enough pw")
    assert list_statement(carol.id) == list_statement(carol.id, 1)
    assert (list_statement(carol.id).total_pages, list_statement(carol.id).total) == (1, 1)
    assert totals_by_kind(carol.id) == [KindTotal("signup", 1, 10), KindTotal("topup", 0, 0),
                                        KindTotal("grant", 0, 0), KindTotal("charge", 0, 0)]
    totals = totals_by_kind(alice.id)
    assert totals == [KindTotal("signup", 1, 10), KindTotal("topup", 5, 15),
                      KindTotal("grant", 2, 18), KindTotal("charge", 4, -12)]
    assert sum(t.credits for t in totals) == ledger.get_balance(alice.id).balance


def test_the_csv_holds_every_entry_of_the_user_oldest_first_and_no_formulas(alice, bob):
    rows = read_csv(alice.id)
    assert list(rows[0]) == CSV_COLUMNS and len(rows) == 12
    assert [r["kind"] for r in rows] == ["signup"] + ["topup"] * 5 + ["grant"] * 2 + ["charge"] * 4
    assert [int(r["amount"]) for r in rows][:6] == [10, 1, 2, 3, 4, 5]
    assert int(rows[-1]["balance_after"]) == ledger.get_balance(alice.id).balance
    assert all(r["request_id"] for r in rows if r["kind"] == "charge")
    assert rows[6]["note"] == "welcome back"
    assert rows[7]["note"].startswith("'=")  # a spreadsheet shows it as text instead of running it
    assert "77" not in {r["amount"] for r in rows}  # bob's top-up is bob's
    assert [(r["kind"], r["amount"]) for r in read_csv(bob.id)] == [("signup", "10"), ("topup", "77")]
