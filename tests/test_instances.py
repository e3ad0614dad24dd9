"""Several app instances on one PostgreSQL database: each owns its holds; only a gone instance's are released."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from gemma_chat.accounts import auth
from gemma_chat.billing import ledger
from gemma_chat.ops import instances
from gemma_chat.store import db
from gemma_chat.config import load_settings
from gemma_chat.ops.startup import recover_after_crash

from tests.conftest import FAST_BCRYPT


def _other_instance(url: str, user_id: int, ready, queue) -> None:
    """Another app instance: it holds credits for an answer and keeps running until killed."""
    db.open_database(url)
    instances.start_instance(url)
    queue.put(ledger.hold_credits(user_id, 2).request_id)
    ready.wait()  # never set: it runs until the test kills it


def _wait_until_the_server_ends_the_sessions_of(request_id: str) -> None:
    """A killed process's sessions (and their locks) end a moment after it is gone: the server has to notice."""
    instance_id = db.Hold.get(db.Hold.request_id == request_id).instance_id
    deadline = time.monotonic() + 10
    while db.database.execute_sql(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = ?", (f"gemma-chat {instance_id}",)
    ).fetchone()[0]:
        assert time.monotonic() < deadline, "the server kept the killed instance's session"
        time.sleep(0.05)


@pytest.fixture
def pg_settings(postgres_url, data_dir):
    settings = load_settings(data_dir=data_dir, env={}, bcrypt_rounds=FAST_BCRYPT, database_url=postgres_url)
    db.open_database(postgres_url)
    yield settings
    instances.stop_instance()
    db.close_database()


def test_start_up_releases_only_the_holds_of_instances_that_are_gone(pg_settings):
    alice = auth.register_user(pg_settings, "alice", "long enough pw")
    context = multiprocessing.get_context("spawn")
    ready, queue = context.Event(), context.Queue()
    other = context.Process(target=_other_instance, args=(pg_settings.database_url, alice.id, ready, queue))
    other.start()
    others_hold = queue.get(timeout=60)

    instances.start_instance(pg_settings.database_url)  # this process is a second instance
    mine = ledger.hold_credits(alice.id, 3)
    # The other instance is alive: a start-up (or a sweep) leaves its hold and ours alone.
    assert recover_after_crash(pg_settings, all_holds=True).released_holds == 0
    assert ledger.get_balance(alice.id).held == 5

    os.kill(other.pid, signal.SIGKILL)  # no clean-up of any kind
    other.join(timeout=30)
    _wait_until_the_server_ends_the_sessions_of(others_hold)
    recovery = recover_after_crash(pg_settings, all_holds=True)
    assert recovery.released_holds == 1
    assert [h.request_id for h in ledger.active_holds()] == [mine.request_id]
    assert db.Hold.get(db.Hold.request_id == others_hold).status == "released"
    assert ledger.get_balance(alice.id) == ledger.Balance(balance=10, held=3)
    assert ledger.capture_hold(mine.request_id).changed  # our answer is charged as usual
    assert ledger.verify_ledger() == []


def test_holds_without_an_owner_are_released_only_once_stale(pg_settings):
    alice = auth.register_user(pg_settings, "alice", "long enough pw")
    hold = ledger.hold_credits(alice.id, 1)  # outside any app instance (the CLI, a script)
    instances.start_instance(pg_settings.database_url)
    assert recover_after_crash(pg_settings, all_holds=True).released_holds == 0
    db.database.execute_sql("UPDATE holds SET created_at = '2000-01-01 00:00:00' WHERE request_id = ?", (hold.request_id,))
    assert recover_after_crash(pg_settings, all_holds=True).released_holds == 1
    assert ledger.get_balance(alice.id).held == 0


def test_a_hold_names_the_instance_that_made_it(settings, database):
    alice = auth.register_user(settings, "alice", "long enough pw")
    assert ledger.hold_credits(alice.id, 1) and db.Hold.get().instance_id is None
    instance_id = instances.start_instance()
    try:
        request_id = ledger.hold_credits(alice.id, 1).request_id
        assert db.Hold.get(db.Hold.request_id == request_id).instance_id == instance_id
    finally:
        instances.stop_instance()
