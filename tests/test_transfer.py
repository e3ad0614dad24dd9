"""`db copy --to URL` (ops/transfer.py): a SQLite database with every kind of row into a real, empty PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import fcntl
import sqlite3

import psycopg
import pytest

from gemma_chat.accounts import admin, auth, keys, sessions
from gemma_chat.billing import idempotency, ledger
from gemma_chat.chats import conversations, documents, interactions
from gemma_chat.ops import transfer
from gemma_chat.store import db
from gemma_chat.ops.error_log import log_error
from gemma_chat.errors import GemmaChatError, LoginError
from gemma_chat.chats.interactions import TurnOutcome
from gemma_chat.ops.startup import open_data_dir, recover_after_crash
from gemma_chat.store import copy as store_copy
from gemma_chat.ops.verify import verify_database

PASSWORD = "long enough pw"


def build_sqlite_database(settings) -> None:
    """Accounts, holds of every status, ledger entries of every kind, chats, turns, sessions, keys,
    idempotent requests, a lock-out, an error and admin actions, through the app's own functions."""
    open_data_dir(settings)
    try:
        root = admin.create_user(settings, None, "root", PASSWORD, admin=True)
        alice = auth.register_user(settings, "alice", PASSWORD)
        bob = auth.register_user(settings, "Bob", PASSWORD)
        ledger.top_up(alice.id, 25, maximum=settings.max_topup)
        admin.grant_credits(root.id, "bob", 7, "welcome")
        admin.grant_credits(None, "alice", -2, "correction")

        chat = conversations.create_conversation(alice.id, "First chat")
        captured = ledger.hold_credits(alice.id, 3)
        first = interactions.start_interaction(captured.request_id, alice.id, "pro", "Gemma 3 12B", "hello", conversation_id=chat)
        ledger.capture_hold(captured.request_id)
        interactions.finish_interaction(captured.request_id, TurnOutcome("ok", "hi there", credits_charged=3, prompt_tokens=4, completion_tokens=3))
        regenerated = ledger.hold_credits(alice.id, 1)
        interactions.start_interaction(
            regenerated.request_id, alice.id, "mini", "Gemma 3 1B", "hello", conversation_id=chat, replaces_id=first.id, source="api"
        )
        ledger.release_hold(regenerated.request_id, "model failed")
        interactions.finish_interaction(regenerated.request_id, TurnOutcome("error", error_id="E-12345678"))
        running = ledger.hold_credits(bob.id, 1)  # an answer in flight when the app stopped
        interactions.start_interaction(running.request_id, bob.id, "mini", "Gemma 3 1B", "still going", conversation_id=conversations.create_conversation(bob.id, "Bob's"))
        interactions.log_refused(ledger.new_request_id(), bob.id, "pro", "Gemma 3 12B", "too dear")
        documents.import_chats(bob.id, json.dumps({  # a chat imported from a file: its turns are not interactions
            "format": documents.FORMAT, "title": "From my laptop", "model": "mini", "system_prompt": "Be brief.",
            "turns": [{"prompt": "old question", "answer": "old answer", "status": "ok", "model": "Gemma 3 1B"}],
        }), max_message_chars=settings.max_message_chars)

        token = sessions.create_session(settings, alice.id)
        signed_in = sessions.resolve_session(settings, token)
        conversations.set_open_conversation(alice.id, signed_in.session_id, chat)
        sessions.create_session(settings, bob.id)
        with pytest.raises(LoginError):
            auth.login(settings, "alice", "wrong password", client="203.0.113.9")

        keys.create_key(alice.id, "laptop")
        old_key, _ = keys.create_key(bob.id, "old")
        keys.revoke_key(old_key.id)
        idempotency.claim_key(alice.id, "retry-1", "digest", stale_after_s=60)
        idempotency.finish_key(alice.id, "retry-1", captured.request_id, 200, {"ok": True})

        admin.set_disabled(root.id, "Bob", True)
        admin.set_disabled(None, "bob", False)
        admin.set_admin(root.id, "alice", True)
        log_error("chat", RuntimeError("the model fell over"), user_id=alice.id, request_id=regenerated.request_id)
        assert verify_database(settings) == []
    finally:
        db.close_database()


def all_rows_sqlite(path, table: str) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return sorted(connection.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


def all_rows_postgresql(url: str, table: str, columns: list[str]) -> list[tuple]:
    with psycopg.connect(url) as connection:
        return sorted(connection.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall(), key=repr)


def sqlite_columns(path, table: str) -> list[str]:
    with sqlite3.connect(path) as connection:
        return [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]


APP_TABLES = [
    "users", "holds", "ledger_entries", "interactions", "error_events", "sessions", "login_throttles",
    "conversations", "api_keys", "idempotent_requests", "admin_actions", "imported_turns",
]


def test_a_copy_has_every_row_of_every_table_and_the_app_runs_on_it(settings, postgres_url):
    build_sqlite_database(settings)
    for table in APP_TABLES:  # the fixture has something in every table, or the test proves less
        assert all_rows_sqlite(settings.db_path, table), table

    copied = transfer.copy_to_postgresql(settings, postgres_url)

    # Every table is copied (the report's roll-up tables too, empty in a database this young).
    assert set(APP_TABLES) <= set(copied.rows)
    assert copied.rows == {table: len(all_rows_sqlite(settings.db_path, table)) for table in copied.rows}
    assert copied.active_holds == 1
    assert copied.summary == (
        f"Copied {settings.db_path} to {postgres_url}: 3 accounts, 7 ledger entries, 4 interactions; the books match "
        "and verify is clean. Still open: 1 active hold; the app's next start releases such holds uncharged."
    )
    for table in APP_TABLES:
        columns = sqlite_columns(settings.db_path, table)
        copied_rows = all_rows_postgresql(postgres_url, table, columns)
        if table == "holds":  # the open hold is handed to a gone instance; nothing else changes
            owner = columns.index("instance_id")
            assert {row[owner] for row in copied_rows} == {None, "copied-from-sqlite"}
            copied_rows = [row[:owner] + (None,) + row[owner + 1:] for row in copied_rows]
        assert copied_rows == all_rows_sqlite(settings.db_path, table), table

    # The app on PostgreSQL afterwards: verify is clean, new rows get fresh ids, money still moves.
    on_postgres = dataclasses.replace(settings, database_url=postgres_url)
    open_data_dir(on_postgres)
    try:
        assert verify_database(on_postgres) == []
        # The answer in flight when the SQLite app stopped: the first start on PostgreSQL releases it.
        assert recover_after_crash(on_postgres, all_holds=True).released_holds == 1
        assert ledger.active_holds() == [] and verify_database(on_postgres) == []
        carol = auth.register_user(on_postgres, "carol", PASSWORD)
        assert carol.id == 4 and carol.balance == settings.starting_balance
        hold = ledger.hold_credits(carol.id, 2)
        assert hold.id == 4  # three holds were copied
        ledger.capture_hold(hold.request_id)
        assert ledger.get_balance(carol.id).balance == settings.starting_balance - 2
        assert conversations.create_conversation(carol.id, "new") == 4  # three chats were copied
        assert ledger.recent_entries(carol.id)[0].id == len(all_rows_sqlite(settings.db_path, "ledger_entries")) + 2
        assert auth.login(on_postgres, "ALICE", PASSWORD).username == "alice"  # the case-folded index came along
        with pytest.raises(Exception, match="append-only"):
            db.database.execute_sql("UPDATE ledger_entries SET amount = amount + 1")
        assert verify_database(on_postgres) == []
    finally:
        db.close_database()


def test_a_second_copy_into_the_same_database_is_refused_and_changes_nothing(settings, postgres_url):
    build_sqlite_database(settings)
    transfer.copy_to_postgresql(settings, postgres_url)
    before = all_rows_postgresql(postgres_url, "ledger_entries", sqlite_columns(settings.db_path, "ledger_entries"))
    with pytest.raises(GemmaChatError, match=r"is not empty \(.*users.*\).*nothing was copied"):
        transfer.copy_to_postgresql(settings, postgres_url)
    assert all_rows_postgresql(postgres_url, "ledger_entries", sqlite_columns(settings.db_path, "ledger_entries")) == before


def test_a_target_with_only_a_lockout_row_is_not_empty_either(settings, postgres_url):
    build_sqlite_database(settings)
    db.open_database(postgres_url)
    db.database.execute_sql("INSERT INTO login_throttles (username_key, client, updated_at) VALUES ('x', 'y', '2026-01-01')")
    db.close_database()
    with pytest.raises(GemmaChatError, match=r"login_throttles already have rows"):
        transfer.copy_to_postgresql(settings, postgres_url)


def test_books_that_differ_roll_the_whole_copy_back(settings, postgres_url, monkeypatch):
    build_sqlite_database(settings)
    real_books = store_copy.books
    calls = []

    def books_off_by_one(read, tables):
        figures = real_books(read, tables)
        calls.append(1)
        if len(calls) == 2:  # the target's books
            figures["accounts (id, balance, held)"][0] = (1, 999, 0)
        return figures

    monkeypatch.setattr(store_copy, "books", books_off_by_one)
    with pytest.raises(GemmaChatError, match=r"books differ \(accounts \(id, balance, held\)\). Nothing was copied"):
        transfer.copy_to_postgresql(settings, postgres_url)
    with psycopg.connect(postgres_url) as connection:
        assert {table: connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in APP_TABLES} == dict.fromkeys(APP_TABLES, 0)


def test_a_sqlite_database_that_fails_verify_is_not_copied(settings, postgres_url):
    build_sqlite_database(settings)
    with sqlite3.connect(settings.db_path) as connection:
        connection.execute("UPDATE users SET balance = balance + 5 WHERE username = 'alice'")
    with pytest.raises(GemmaChatError, match=r"fails verify \(2 problem\(s\), the first: user alice: balance 35 but ledger entries sum to 30\)"):
        transfer.copy_to_postgresql(settings, postgres_url)


def test_no_copy_while_the_app_runs_on_the_data_dir(settings, postgres_url):
    build_sqlite_database(settings)
    with open(settings.data_dir / "app.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what serve.py holds while the app runs
        with pytest.raises(GemmaChatError, match=r"gemma-chat is running on .*: stop it, then copy"):
            transfer.copy_to_postgresql(settings, postgres_url)
    assert transfer.copy_to_postgresql(settings, postgres_url).rows["users"] == 3  # stopped: it copies


@pytest.mark.parametrize(
    "url, message",
    [
        ("sqlite:///elsewhere.db", r"--to must be a PostgreSQL URL"),
        ("postgresql://nobody:s3cret@/nowhere?host=/nonexistent-socket-dir", r"Cannot open the database postgresql://nobody:\*\*\*@/nowhere"),
    ],
)
def test_bad_targets_are_one_clear_error(settings, url, message):
    build_sqlite_database(settings)
    with pytest.raises(GemmaChatError, match=message) as raised:
        transfer.copy_to_postgresql(settings, url)
    assert "s3cret" not in raised.value.message


def test_no_sqlite_database_to_copy(settings, postgres_url):
    with pytest.raises(GemmaChatError, match=r"There is no SQLite database at .*gemma_chat.db to copy"):
        transfer.copy_to_postgresql(settings, postgres_url)
    assert not settings.data_dir.exists()  # nothing made on the way
