"""PostgreSQL restarted or stopped under the running app: mid-answer and mid-top-up.

Each test has a server of its own (tests/postgres.py), restarted with `pg_ctl -m fast` as an operator
would: every session is ended and its transaction rolled back. The app is never restarted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from gemma_chat.store import db
from gemma_chat.billing.ledger import verify_ledger

from postgres import REQUIRE_ENV, PostgresServer, postgres_available

from .conftest import FAULTS_HOOK, signed_up, start_app

pytestmark = pytest.mark.slow

GONE_MESSAGE = "The database could not be reached; nothing was changed. Please try again."
GONE_ANSWER_MESSAGE = "The database could not be reached, so this answer was not recorded. Nothing was charged; please try again."


@pytest.fixture
def own_server():
    """A PostgreSQL server for this test alone (it gets restarted) and a database on it."""
    if not postgres_available():
        reason = "PostgreSQL 15 is not installed (.ci/run installs it)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="gemma-pg-restart-")))
    server.start()
    try:
        yield server, server.fresh_database()
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def rows(url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(sql, params).fetchall()


def books(url: str, username: str) -> tuple[int, int, list[tuple[str, int]]]:
    """The user's balance, held credits and ledger entries (kind, amount) in order."""
    (balance, held), = rows(url, "SELECT balance, held FROM users WHERE username = %s", (username,))
    entries = rows(url, "SELECT e.kind, e.amount FROM ledger_entries e JOIN users u ON u.id = e.user_id "
                        "WHERE u.username = %s ORDER BY e.id", (username,))
    return balance, held, entries


def verify(url: str) -> list[str]:
    db.open_database(url)
    try:
        return db.check_integrity() + verify_ledger(stale_after_s=None)
    finally:
        db.close_database()


def chat_in_background(client, text: str):
    held, finished = threading.Event(), {}
    thread = threading.Thread(target=lambda: finished.update(reply=client.chat("mini", text, on_update=lambda _: held.set())))
    thread.start()
    assert held.wait(60), "the turn never started"
    return thread, finished


def test_a_restart_mid_answer_charges_once_and_a_server_down_at_its_end_charges_nothing(own_server, tmp_path):
    server, url = own_server
    app = start_app(tmp_path / "app", GEMMA_CHAT_DATABASE_URL=url, **FAULTS_HOOK)
    try:
        alice = signed_up(app, "alice")

        # Restarted while the answer streams: the turn's next statement finds a new server and connects again.
        thread, finished = chat_in_background(alice, "[fault:slow] Tell me about the sea.")
        server.restart()
        thread.join(60)
        reply = finished["reply"]
        assert reply.charged == 1 and "Nothing was charged" not in reply.text, reply.text
        assert books(url, "alice") == (9, 0, [("signup", 10), ("charge", -1)])

        # Stopped while the answer streams and still down when it ends: one clear failure, nothing charged...
        thread, finished = chat_in_background(alice, "[fault:slow] Tell me about the hills.")
        server.stop_fast()
        thread.join(60)
        assert not thread.is_alive(), "the turn hung on the missing server"
        reply = finished["reply"]
        assert reply.charged == 0 and GONE_ANSWER_MESSAGE in reply.text and "Traceback" not in reply.text, reply.text
        server.resume()
        deadline = time.monotonic() + 30  # ...and the hold is released once the server is back, without a restart
        while books(url, "alice")[1] != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert books(url, "alice") == (9, 0, [("signup", 10), ("charge", -1)])
        assert rows(url, "SELECT status, release_reason FROM holds ORDER BY id") == [
            ("captured", None), ("released", "database unreachable")]
        assert [status for status, in rows(url, "SELECT status FROM interactions ORDER BY id")] == ["ok", "error"]

        # The same app answers and charges again.
        assert alice.chat("mini", "What is the capital of France?").charged == 1
        assert books(url, "alice")[:2] == (8, 0)
        assert "Traceback" not in app.log_path.read_text()
        assert verify(url) == []
    finally:
        app.stop()


def test_a_restart_mid_top_up_fails_it_once_and_the_next_top_up_counts_once(own_server, tmp_path):
    server, url = own_server
    # The top-up waits for a row lock the test holds, so that the restart finds it half-way.
    app = start_app(tmp_path / "app", GEMMA_CHAT_DATABASE_URL=url, GEMMA_CHAT_BUSY_TIMEOUT_MS="60000")
    try:
        alice = signed_up(app, "alice")
        blocker = psycopg.connect(url)
        blocker.execute("SELECT balance FROM users WHERE username = 'alice' FOR UPDATE")
        result = {}
        top_up = threading.Thread(target=lambda: result.update(message=alice.top_up(25)))
        top_up.start()
        deadline = time.monotonic() + 30
        while not rows(url, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rows(url, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"), "the top-up never waited"

        server.restart()  # ends the top-up's transaction (and the blocker's) half-way
        top_up.join(60)
        blocker.close()
        assert result["message"] == f"⚠ {GONE_MESSAGE}"
        assert books(url, "alice") == (10, 0, [("signup", 10)])  # nothing of it was written

        # The user tries again: the same app, connected again, adds it once.
        assert "Added 25 credits" in alice.top_up(25)
        assert books(url, "alice") == (35, 0, [("signup", 10), ("topup", 25)])
        assert alice.chat("mini", "What is the capital of France?").charged == 1
        assert "Traceback" not in app.log_path.read_text()
        assert verify(url) == []
    finally:
        app.stop()


def test_after_a_restart_no_instance_takes_a_live_one_for_gone(own_server, tmp_path):
    """Two instances on one server, sweeping for dead instances' holds every second. A restart ends
    every session, liveness locks included: the survivor of the restart must not release the holds
    of an instance that is answering."""
    server, url = own_server
    env = {**FAULTS_HOOK, "GEMMA_CHAT_DATABASE_URL": url, "GEMMA_CHAT_ORPHAN_SWEEP_S": "1"}
    answering = start_app(tmp_path / "a", **env)
    sweeping = start_app(tmp_path / "b", **env)
    try:
        alice = signed_up(answering, "alice")
        thread, finished = chat_in_background(alice, "[fault:slow] Tell me about the sea.")
        server.restart()
        thread.join(60)
        reply = finished["reply"]
        assert reply.charged == 1, reply.text
        assert rows(url, "SELECT status, release_reason FROM holds") == [("captured", None)]
        assert books(url, "alice") == (9, 0, [("signup", 10), ("charge", -1)])
        assert "holds of a stopped app instance" not in sweeping.log_path.read_text()
        assert verify(url) == []
    finally:
        sweeping.stop()
        answering.stop()
