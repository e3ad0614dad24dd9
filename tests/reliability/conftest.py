"""Attacking the running app: `python main.py` subprocesses, their SQLite files, and `verify`.

The app under attack is always the real one (tests/e2e's RunningApp): the checks read its database
from this process, which SQLite's WAL mode allows while the app runs.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from conftest import MODEL_CACHE
from e2e.conftest import RunningApp

from gemma_chat.store import db
from gemma_chat.config import load_settings
from gemma_chat.ops.verify import verify_database

from .gradio_http import GradioSession

FAULTS_HOOK = {
    "GEMMA_CHAT_FAULT_INJECTION": "tests.reliability.faults:inject",
    "GEMMA_CHAT_WORKER_FAULT_INJECTION": "tests.reliability.worker_faults:install",
}


def start_app(directory: Path, **env: str) -> RunningApp:
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    return RunningApp(directory / "data", directory / "app.log", **env)


@pytest.fixture(scope="module")
def fault_app(tmp_path_factory):
    """One app for a whole module, with the fault-injecting engine (tests/reliability/faults.py)."""
    running = start_app(tmp_path_factory.mktemp("fault-app"), **FAULTS_HOOK)
    yield running
    running.stop()


def session(app: RunningApp) -> GradioSession:
    return GradioSession(app.url)


def signed_up(app: RunningApp, username: str, password: str = "long enough pw") -> GradioSession:
    client = session(app)
    message = client.register(username, password)
    assert message == "", message
    return client


# --- the app's database, read from the test ---------------------------------------------------


def query(data_dir: Path, sql: str, params=()) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(data_dir / "gemma_chat.db", timeout=30)) as connection:
        return connection.execute(sql, params).fetchall()


def scalar(data_dir: Path, sql: str, params=()):
    return query(data_dir, sql, params)[0][0]


TABLES = ("users", "holds", "ledger_entries", "interactions", "error_events", "admin_actions")


def snapshot(data_dir: Path) -> dict[str, list[tuple]]:
    """Every row of every table: equal snapshots mean nothing changed."""
    return {table: query(data_dir, f"SELECT * FROM {table} ORDER BY id") for table in TABLES}


def balance(data_dir: Path, username: str) -> tuple[int, int]:
    return query(data_dir, "SELECT balance, held FROM users WHERE username = ?", (username,))[0]


def verify(data_dir: Path) -> list[str]:
    """`python main.py verify`'s checks, run here on the app's database."""
    db.open_database(data_dir / "gemma_chat.db")
    try:
        return verify_database(load_settings(data_dir=data_dir, env={}))
    finally:
        db.close_database()
