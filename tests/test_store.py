"""The storage seam (gemma_chat/store): both engines end with the same schema, placeholders are
rewritten safely, and migrations racing on a blank PostgreSQL database run once each."""

from __future__ import annotations

import multiprocessing
import sqlite3

import psycopg
import pytest

from gemma_chat.store import db
from gemma_chat.store.dialect import qmark_to_format
from gemma_chat.store.schema import MIGRATIONS

# What each engine calls the two column types the schema uses.
_TYPES = {"integer": "integer", "bigint": "integer", "text": "text"}


def sqlite_schema(path) -> dict:
    with sqlite3.connect(path) as connection:
        tables = [name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )]
        return {
            "columns": {
                table: {
                    # A PRIMARY KEY column is NOT NULL on PostgreSQL; SQLite reports its rowid alias as nullable.
                    name: (_TYPES[kind.lower()], bool(not_null or in_key))
                    for _, name, kind, not_null, _, in_key in connection.execute(f"PRAGMA table_info({table})")
                }
                for table in tables
            },
            # sqlite_autoindex_*: what SQLite makes for a PRIMARY KEY or UNIQUE constraint (PostgreSQL's _pkey and _key).
            "indexes": {name for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex_%'"
            )},
            "triggers": {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")},
            "migrations": [name for (name,) in connection.execute("SELECT name FROM schema_migrations ORDER BY name")],
        }


def postgresql_schema(url: str) -> dict:
    with psycopg.connect(url) as connection:
        columns: dict[str, dict] = {}
        for table, name, kind, nullable in connection.execute(
            """SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
               WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"""
        ):
            columns.setdefault(table, {})[name] = (_TYPES[kind], nullable == "NO")
        return {
            "columns": columns,
            "indexes": {name for (name,) in connection.execute(
                """SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()
                   AND indexname NOT IN (SELECT conname FROM pg_constraint)"""
            )},
            "triggers": {name for (name,) in connection.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")},
            "migrations": [name for (name,) in connection.execute("SELECT name FROM schema_migrations ORDER BY name")],
        }


def test_both_engines_end_with_the_same_schema(tmp_path, postgres_url):
    for target in (tmp_path / "blank.db", postgres_url):
        db.open_database(target)
        db.close_database()
    on_sqlite, on_postgresql = sqlite_schema(tmp_path / "blank.db"), postgresql_schema(postgres_url)

    assert set(on_sqlite["columns"]) == set(on_postgresql["columns"])
    for table, columns in on_sqlite["columns"].items():
        assert columns == on_postgresql["columns"][table], table
    assert on_sqlite["indexes"] == on_postgresql["indexes"]
    assert len(on_sqlite["indexes"]) >= 20  # the comparison saw the indexes, not two empty sets
    # The append-only triggers on both; PostgreSQL also refuses TRUNCATE, which SQLite does not have.
    truncate = {name for name in on_postgresql["triggers"] if name.endswith("_no_truncate")}
    assert on_sqlite["triggers"] == on_postgresql["triggers"] - truncate
    assert truncate == {"ledger_entries_no_truncate", "admin_actions_no_truncate"}
    assert on_sqlite["migrations"] == on_postgresql["migrations"] == sorted(name for name, _ in MIGRATIONS)


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT * FROM users WHERE id = ? AND username = ?", "SELECT * FROM users WHERE id = %s AND username = %s"),
        ("SELECT '?' , ? FROM t", "SELECT '?' , %s FROM t"),  # a ? inside quotes is text, not a placeholder
        ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', %s"),  # an escaped quote does not end the string
        ('SELECT "odd?name" FROM t WHERE x = ?', 'SELECT "odd?name" FROM t WHERE x = %s'),
        ("SELECT 100 % 7, ? LIKE '50%'", "SELECT 100 %% 7, %s LIKE '50%%'"),  # psycopg reads every % as its own
        ("SELECT 1", "SELECT 1"),
    ],
)
def test_qmark_to_format(sql, expected):
    assert qmark_to_format(sql) == expected


def test_a_percent_and_a_quoted_question_mark_reach_postgresql_as_written(postgres_url):
    db.open_database(postgres_url)
    try:
        row = db.database.execute_sql("SELECT '50%', 'why?', ?, 100 % 7", ("value",)).fetchone()
        assert row == ("50%", "why?", "value", 2)
    finally:
        db.close_database()


def _migrate_when_all_are_ready(url: str, barrier, results) -> None:
    """A process starting the app: connect, wait for the others, then apply the migrations."""
    try:
        db.open_database(url, migrate=False)
        barrier.wait(timeout=30)
        results.put(("applied", db.apply_migrations()))
    except Exception as exc:  # reported to the test, which says what went wrong
        results.put(("failed", f"{type(exc).__name__}: {exc}"))
    finally:
        db.close_database()


def test_processes_migrating_a_blank_postgresql_together_apply_each_migration_once(postgres_url):
    context = multiprocessing.get_context("spawn")  # fresh interpreters, like app instances starting together
    processes = 4
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_migrate_when_all_are_ready, args=(postgres_url, barrier, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)

    assert [kind for kind, _ in outcomes] == ["applied"] * processes, outcomes
    applied = sorted(name for _, names in outcomes for name in names)
    assert applied == sorted(name for name, _ in MIGRATIONS)  # each migration by exactly one process
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT COUNT(*), COUNT(DISTINCT name) FROM schema_migrations").fetchone() == (len(MIGRATIONS),) * 2


def test_a_connection_the_postgresql_server_dropped_is_opened_again(postgres_url):
    """A server restart or failover ends every connection: the app's next call works on a new one."""
    db.open_database(postgres_url)
    try:
        (backend,) = db.database.execute_sql("SELECT pg_backend_pid()").fetchone()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        assert db.database.execute_sql("SELECT pg_backend_pid()").fetchone()[0] != backend
        with db.transaction():  # and a transaction after it
            db.database.execute_sql("INSERT INTO schema_migrations (name, applied_at) VALUES ('x', 'y')")
        assert "x" in db.applied_migrations()
    finally:
        db.close_database()
