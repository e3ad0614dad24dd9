"""Races across four processes on one PostgreSQL database: the money, sign-in and claim paths stay exact.

PostgreSQL runs READ COMMITTED with many writers at once, where SQLite has a single writer; each
test starts four real processes together (a barrier) on the same rows and checks whole outcomes:
totals, `verify`, one administrator, one claim.
"""

from __future__ import annotations


import pytest

from gemma_chat.accounts import auth
from gemma_chat.billing import idempotency, ledger
from gemma_chat.store import db
from gemma_chat.config import load_settings
from gemma_chat.errors import AccountLockedError, InsufficientCreditsError, LoginError

from tests.conftest import FAST_BCRYPT, run_processes_together

PROCESSES = 4


def _run_together(target, args_for) -> list:
    return run_processes_together(PROCESSES, target, args_for)


def _settings(url: str):
    return load_settings(env={}, bcrypt_rounds=FAST_BCRYPT, database_url=url, lockout_attempts=1000)


def _release_everything(barrier, queue, url: str, request_ids: list[str]) -> None:
    db.open_database(url)
    barrier.wait()
    queue.put(sum(ledger.release_hold(request_id).changed for request_id in request_ids))


def test_two_releases_of_one_hold_never_release_it_twice(postgres_url):
    """The regression the issue found: concurrent release_hold calls left held = 0 with 3 still active."""
    settings = _settings(postgres_url)
    db.open_database(postgres_url)
    alice = auth.register_user(settings, "alice", "long enough pw")
    ledger.grant_credits(alice.id, 190, actor_id=None)
    holds = [ledger.hold_credits(alice.id, 1).request_id for _ in range(200)]
    db.close_database()
    # Each process releases every hold, in its own order: every hold is released by 4 processes at once.
    released = _run_together(_release_everything, lambda n: (postgres_url, holds[n:] + holds[:n]))
    db.open_database(postgres_url)
    assert sum(released) == 200  # each hold changed exactly once
    assert ledger.get_balance(alice.id) == ledger.Balance(balance=200, held=0)
    assert ledger.verify_ledger() == []


def _hold_capture_or_release(barrier, queue, url: str, user_id: int, worker: int) -> None:
    db.open_database(url)
    barrier.wait()
    charged = released = refused = 0
    for n in range(60):
        try:
            hold = ledger.hold_credits(user_id, 1 + n % 3)
        except InsufficientCreditsError:
            refused += 1
            continue
        if (n + worker) % 4 == 0:
            released += ledger.release_hold(hold.request_id).changed
        else:
            charged += hold.amount if ledger.capture_hold(hold.request_id).changed else 0
            ledger.capture_hold(hold.request_id)  # a retried capture changes nothing
    queue.put((charged, released, refused))


def test_holds_captures_and_releases_from_four_processes_end_exact(postgres_url):
    settings = _settings(postgres_url)
    db.open_database(postgres_url)
    alice = auth.register_user(settings, "alice", "long enough pw")  # 10 starting credits
    ledger.grant_credits(alice.id, 190, actor_id=None)
    db.close_database()
    results = _run_together(_hold_capture_or_release, lambda n: (postgres_url, alice.id, n))
    db.open_database(postgres_url)
    charged = sum(r[0] for r in results)
    assert sum(r[1] for r in results) > 0 and sum(r[2] for r in results) > 0  # every path ran
    assert ledger.get_balance(alice.id) == ledger.Balance(balance=200 - charged, held=0)
    assert ledger.verify_ledger() == []


def _fail_logins(barrier, queue, url: str, attempts: int) -> None:
    settings = _settings(url)
    db.open_database(url)
    barrier.wait()
    failed = 0
    for _ in range(attempts):
        try:
            auth.login(settings, "alice", "not the password", client="203.0.113.9")
        except (LoginError, AccountLockedError):
            failed += 1
    queue.put(failed)


def test_failed_sign_ins_from_four_processes_are_all_counted(postgres_url):
    settings = _settings(postgres_url)
    db.open_database(postgres_url)
    auth.register_user(settings, "alice", "long enough pw")
    db.close_database()
    failed = _run_together(_fail_logins, lambda n: (postgres_url, 25))
    db.open_database(postgres_url)
    assert sum(failed) == 100
    (counted,) = db.database.execute_sql(
        "SELECT failures FROM login_throttles WHERE username_key = 'alice' AND client = '203.0.113.9'"
    ).fetchone()
    assert counted == 100  # none lost to two processes reading the same count


def _register(barrier, queue, url: str, name: str) -> None:
    db.open_database(url)
    barrier.wait()
    queue.put(auth.register_user(_settings(url), name, "long enough pw").is_admin)


def test_four_first_sign_ups_at_once_make_one_administrator(postgres_url):
    db.open_database(postgres_url)  # the schema, and no account yet
    db.close_database()
    admins = _run_together(_register, lambda n: (postgres_url, f"first{n}"))
    assert sorted(admins) == [False, False, False, True]


def _claim(barrier, queue, url: str, user_id: int) -> None:
    db.open_database(url)
    barrier.wait()
    queue.put(idempotency.claim_key(user_id, "retry-1", "same body", stale_after_s=600).state)


def test_one_idempotency_key_claimed_by_four_processes_runs_once(postgres_url):
    db.open_database(postgres_url)
    alice = auth.register_user(_settings(postgres_url), "alice", "long enough pw")
    db.close_database()
    states = _run_together(_claim, lambda n: (postgres_url, alice.id))
    assert sorted(states) == ["run", "running", "running", "running"]


pytestmark = pytest.mark.slow
