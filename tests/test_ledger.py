"""The credit ledger: hold, capture, release, top-up, grant, and the invariant `verify` checks."""

from __future__ import annotations

import threading

import pytest

from gemma_chat.accounts import auth
from gemma_chat.billing import ledger
from gemma_chat.store import db
from gemma_chat.store.db import Hold, LedgerEntry
from gemma_chat.errors import InsufficientCreditsError, ValidationError
from tests.conftest import run_processes_together

pytestmark = pytest.mark.both_engines


@pytest.fixture
def alice(settings, database):
    return auth.register_user(settings, "alice", "long enough pw")


def balance_of(user) -> ledger.Balance:
    return ledger.get_balance(user.id)


def test_hold_then_capture_charges_once(alice):
    hold = ledger.hold_credits(alice.id, 3)
    assert balance_of(alice) == ledger.Balance(balance=10, held=3)
    first = ledger.capture_hold(hold.request_id)
    assert first.changed and first.status == "captured"
    assert balance_of(alice) == ledger.Balance(balance=7, held=0)
    again = ledger.capture_hold(hold.request_id)
    assert not again.changed and "already captured" in again.message
    assert balance_of(alice) == ledger.Balance(balance=7, held=0)
    charges = list(LedgerEntry.select().where(LedgerEntry.kind == "charge"))
    assert [(c.amount, c.balance_after, c.request_id) for c in charges] == [(-3, 7, hold.request_id)]
    assert ledger.verify_ledger() == []


def test_release_charges_nothing_and_is_idempotent(alice):
    hold = ledger.hold_credits(alice.id, 3)
    assert ledger.release_hold(hold.request_id, "model failed").changed
    assert not ledger.release_hold(hold.request_id).changed
    assert balance_of(alice) == ledger.Balance(balance=10, held=0)
    captured_after_release = ledger.capture_hold(hold.request_id)
    assert not captured_after_release.changed and "already released" in captured_after_release.message
    assert balance_of(alice).balance == 10
    assert LedgerEntry.select().where(LedgerEntry.kind == "charge").count() == 0


def test_hold_refuses_beyond_available_credits(alice):
    ledger.hold_credits(alice.id, 9)
    with pytest.raises(InsufficientCreditsError) as refused:
        ledger.hold_credits(alice.id, 3)
    assert (refused.value.price, refused.value.available) == (3, 1)
    assert "costs 3" in refused.value.message and "you have 1" in refused.value.message
    assert Hold.select().count() == 1


def test_top_up_bounds_and_entries(alice, settings):
    entry = ledger.top_up(alice.id, "5", maximum=settings.max_topup)
    assert (entry.kind, entry.amount, entry.balance_after) == ("topup", 5, 15)
    assert ledger.top_up(alice.id, 1000, maximum=1000).balance_after == 1015
    for bad in [0, -1, 1001, "1.5", "abc", "", " ", "1e3", True, 2.5, None, "٣", "99999999999999999999"]:
        with pytest.raises(ValidationError):
            ledger.top_up(alice.id, bad, maximum=1000)
    assert balance_of(alice).balance == 1015
    assert LedgerEntry.select().where(LedgerEntry.kind == "topup").count() == 2


def test_grants_record_the_admin_and_never_go_below_holds(settings, alice):
    bob = auth.register_user(settings, "bob", "long enough pw")
    entry = ledger.grant_credits(bob.id, 50, actor_id=alice.id, note="welcome")
    assert (entry.kind, entry.amount, entry.actor_id, entry.note) == ("grant", 50, alice.id, "welcome")
    ledger.hold_credits(bob.id, 55)
    with pytest.raises(InsufficientCreditsError):
        ledger.grant_credits(bob.id, -10, actor_id=alice.id)  # would take held credits
    assert balance_of(bob) == ledger.Balance(balance=60, held=55)
    ledger.grant_credits(bob.id, -5, actor_id=alice.id, note="correction")
    assert balance_of(bob) == ledger.Balance(balance=55, held=55)
    assert ledger.verify_ledger() == []


def test_the_ledger_is_append_only(alice):
    refused = ["UPDATE ledger_entries SET amount = 100", "DELETE FROM ledger_entries"]
    if db.dialect().name == "postgresql":
        refused.append("TRUNCATE ledger_entries")
    for statement in refused:
        with pytest.raises(Exception, match="append-only"):
            db.database.execute_sql(statement)
    assert ledger.verify_ledger() == [] and balance_of(alice).balance == 10


def test_the_database_refuses_a_second_charge_for_one_request(alice):
    hold = ledger.hold_credits(alice.id, 1)
    ledger.capture_hold(hold.request_id)
    with pytest.raises(Exception, match="(?i)unique"):
        LedgerEntry.create(user=alice.id, amount=-1, kind="charge", balance_after=8, request_id=hold.request_id)


def test_verify_fails_after_a_balance_is_altered_by_raw_sql(alice):
    assert ledger.verify_ledger() == []
    db.database.execute_sql("UPDATE users SET balance = balance + 5 WHERE id = ?", (alice.id,))
    problems = ledger.verify_ledger()
    assert any("balance 15 but ledger entries sum to 10" in p for p in problems)


def test_negative_balance_is_impossible_even_by_raw_sql(alice):
    with pytest.raises(Exception, match="(?i)check"):
        db.database.execute_sql("UPDATE users SET balance = -1 WHERE id = ?", (alice.id,))


def test_stale_holds_are_released(alice):
    old = ledger.hold_credits(alice.id, 2)
    db.database.execute_sql("UPDATE holds SET created_at = '2000-01-01 00:00:00' WHERE request_id = ?", (old.request_id,))
    fresh = ledger.hold_credits(alice.id, 1)
    assert any("stale" in p for p in ledger.verify_ledger(stale_after_s=60))
    released = ledger.release_stale_holds(older_than_s=60)
    assert [h.request_id for h in released] == [old.request_id]
    assert balance_of(alice) == ledger.Balance(balance=10, held=1)
    assert [h.request_id for h in ledger.release_stale_holds()] == [fresh.request_id]
    assert balance_of(alice).held == 0
    assert Hold.get(Hold.request_id == old.request_id).release_reason == "released at start-up"


def _spend_all(user_id: int, cycles: int, price: int) -> tuple[int, int]:
    charged = refused = 0
    for _ in range(cycles):
        try:
            hold = ledger.hold_credits(user_id, price)
        except InsufficientCreditsError:
            refused += 1
            continue
        charged += ledger.capture_hold(hold.request_id).changed
    return charged, refused


def test_eight_threads_never_spend_the_same_credits(settings, database):
    user = auth.register_user(settings, "alice", "long enough pw")
    ledger.grant_credits(user.id, 27, actor_id=None)  # 37 credits for 400 attempts
    results = []
    threads = [threading.Thread(target=lambda: results.append(_spend_all(user.id, 50, 1))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(c for c, _ in results) == 37
    assert sum(r for _, r in results) == 400 - 37
    assert balance_of(user) == ledger.Balance(balance=0, held=0)
    assert ledger.verify_ledger() == []


def _process_worker(barrier, queue, db_path: str, user_id: int) -> None:
    db.open_database(db_path)
    barrier.wait()
    queue.put(_spend_all(user_id, 50, 1))


@pytest.mark.slow
def test_four_processes_on_one_database_never_spend_the_same_credits(settings, database):
    user = auth.register_user(settings, "alice", "long enough pw")
    ledger.grant_credits(user.id, 50, actor_id=None)  # 60 credits for 200 attempts
    db.close_database()
    results = run_processes_together(4, _process_worker, lambda n: (str(settings.database_target), user.id))
    db.open_database(settings.database_target)
    assert sum(c for c, _ in results) == 60
    assert sum(r for _, r in results) == 200 - 60
    assert balance_of(user) == ledger.Balance(balance=0, held=0)
    assert ledger.verify_ledger() == []
