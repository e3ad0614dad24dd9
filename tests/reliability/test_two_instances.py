"""Two app instances on one PostgreSQL database; `kill -9` one mid-answer.

The survivor releases the dead instance's hold (its sweep), and only that one: its own answer in
flight goes on and is charged; the books balance.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from gemma_chat.store import db
from gemma_chat.billing.ledger import verify_ledger

from .conftest import FAULTS_HOOK, signed_up, start_app

pytestmark = pytest.mark.slow


def rows(url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(sql, params).fetchall()


def hold_of(url: str, username: str) -> tuple[str, str | None]:
    """The status and release reason of the user's latest hold."""
    return rows(
        url,
        "SELECT h.status, h.release_reason FROM holds h JOIN users u ON u.id = h.user_id WHERE u.username = %s ORDER BY h.id DESC LIMIT 1",
        (username,),
    )[0]


def start_chat(client, text: str):
    started, finished = threading.Event(), {}

    def chat():
        try:
            finished["reply"] = client.chat("mini", text, on_update=lambda _: started.set())
        except Exception as exc:  # noqa: BLE001 — the killed instance's client loses its server
            finished["error"] = exc

    thread = threading.Thread(target=chat)
    thread.start()
    assert started.wait(60), "the turn never started"
    return thread, finished


def test_kill_one_instance_mid_answer_and_the_survivor_releases_only_its_holds(tmp_path, postgres_url):
    env = {**FAULTS_HOOK, "GEMMA_CHAT_DATABASE_URL": postgres_url, "GEMMA_CHAT_ORPHAN_SWEEP_S": "1"}
    doomed = start_app(tmp_path / "a", **env)
    survivor = start_app(tmp_path / "b", **env)
    try:
        alice, bob = signed_up(doomed, "alice"), signed_up(survivor, "bob")  # one database, two front doors
        alice_chat, _ = start_chat(alice, "[fault:slow] Tell me about the sea.")
        bob_chat, bob_result = start_chat(bob, "[fault:slow] Tell me about the hills.")
        assert hold_of(postgres_url, "alice")[0] == "active" and hold_of(postgres_url, "bob")[0] == "active"

        doomed.process.kill()  # SIGKILL mid-answer: no clean-up of any kind
        doomed.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while hold_of(postgres_url, "alice")[0] == "active" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert hold_of(postgres_url, "alice") == ("released", "released: its app instance is gone")
        assert hold_of(postgres_url, "bob")[0] in ("active", "captured")  # the survivor's own: untouched

        bob_chat.join(timeout=60)
        alice_chat.join(timeout=10)
        assert "reply" in bob_result, bob_result
        assert hold_of(postgres_url, "bob")[0] == "captured"
        balances = dict(rows(postgres_url, "SELECT username, balance - held FROM users"))
        assert balances == {"alice": 10, "bob": 9}  # alice charged nothing, bob one credit for his answer
        statuses = dict(rows(postgres_url, "SELECT u.username, i.status FROM interactions i JOIN users u ON u.id = i.user_id"))
        assert statuses == {"alice": "interrupted", "bob": "ok"}
        assert "Released 1 holds of a stopped app instance" in survivor.log_path.read_text()
        db.open_database(postgres_url)
        try:
            assert verify_ledger() == []
        finally:
            db.close_database()
    finally:
        survivor.stop()
        if doomed.process.poll() is None:
            doomed.stop()
