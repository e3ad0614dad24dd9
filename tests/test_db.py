"""The schema: migrations from a blank file, recorded once, safe to re-run; settings loading."""

from __future__ import annotations

import sqlite3

import pytest

from gemma_chat.store import db
from gemma_chat.config import load_settings
from gemma_chat.errors import ConfigError


def test_migrations_build_a_blank_database_once(settings, database):
    assert db.applied_migrations() == [name for name, _ in db.MIGRATIONS]
    assert db.apply_migrations() == []  # nothing left to apply on the next start
    connection = sqlite3.connect(settings.db_path)
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "holds", "ledger_entries", "interactions", "error_events", "schema_migrations"} <= tables
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_new_migration_applies_on_top_of_the_previous_schema(settings, database):
    extra = db.MIGRATIONS + [("0099_test_column", ["ALTER TABLE users ADD COLUMN test_note TEXT"])]
    assert db.apply_migrations(extra) == ["0099_test_column"]
    assert db.apply_migrations(extra) == []


def test_the_report_indexes_apply_to_a_database_of_the_first_schema(tmp_path):
    path = tmp_path / "old.db"
    db.open_database(path, migrate=False)
    db.apply_migrations(db.MIGRATIONS[:1])
    db.database.execute_sql(
        "INSERT INTO users (username, password_hash, balance, created_at) VALUES ('old', 'x', 0, '2026-01-01')"
    )
    db.close_database()
    db.open_database(path)  # what the next start-up does
    try:
        assert db.applied_migrations() == [name for name, _ in db.MIGRATIONS]
        assert db.database.execute_sql("SELECT username FROM users").fetchall() == [("old",)]
        plan = " ".join(
            row[3]
            for row in db.database.execute_sql(
                "EXPLAIN QUERY PLAN SELECT model_name, status, COUNT(*) FROM interactions GROUP BY model_name, status"
            )
        )
        assert plan == "SCAN interactions USING COVERING INDEX interactions_by_model_status"
    finally:
        db.close_database()


def test_a_failing_migration_leaves_nothing_behind(settings, database):
    broken = db.MIGRATIONS + [("0099_broken", ["CREATE TABLE half_done (x)", "THIS IS NOT SQL"])]
    with pytest.raises(Exception):
        db.apply_migrations(broken)
    assert "0099_broken" not in db.applied_migrations()
    assert db.database.execute_sql("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchone() is None


def test_connection_pragmas(settings, database):
    pragma = lambda name: db.database.execute_sql(f"PRAGMA {name}").fetchone()[0]  # noqa: E731
    assert pragma("foreign_keys") == 1
    assert pragma("synchronous") == 2  # FULL
    assert pragma("busy_timeout") == settings.busy_timeout_ms


def test_settings_from_toml_and_env(tmp_path):
    config = tmp_path / "gemma.toml"
    config.write_text('starting_balance = 50\nmax_topup = 20\n[tiers.pro]\nprice = 5\nmax_tokens = 256\n')
    settings = load_settings(config_file=config, env={"GEMMA_CHAT_MAX_TOPUP": "30"})
    assert (settings.starting_balance, settings.max_topup) == (50, 30)  # env beats the file
    assert (settings.tiers["pro"].price, settings.tiers["pro"].max_tokens, settings.tiers["mini"].price) == (5, 256, 1)


def test_a_tier_temperature_from_env_or_file(tmp_path):
    config = tmp_path / "gemma.toml"
    config.write_text("[tiers.pro]\ntemperature = 0.7\n")
    settings = load_settings(config_file=config, env={"GEMMA_CHAT_MINI_TEMPERATURE": "0"})
    assert (settings.tiers["mini"].temperature, settings.tiers["pro"].temperature) == (0.0, 0.7)
    assert load_settings(env={}).tiers["mini"].temperature is None  # the prompt format's own sampling
    for bad, message in [("warm", "not a valid number"), ("-1", "from 0"), ("nan", "from 0")]:
        with pytest.raises(ConfigError, match=message):
            load_settings(env={"GEMMA_CHAT_MINI_TEMPERATURE": bad})


@pytest.mark.parametrize(
    "text, message",
    [
        ("starting_balance = 'lots'", "not a valid int"),
        ("unknown_thing = 1", "unknown setting"),
        ("[tiers.ultra]\nprice = 9", "tiers.ultra.model_file is required"),
        ("[tiers.ultra]\nmodel_file = 'u.gguf'", "needs a price"),
        ('[tiers."Ultra!"]\nprice = 9', "tier names are"),
        ("[tiers.pro]\nbackend = 'openai'", "base_url must be an http"),
        ("[tiers.pro]\nbackend = 'cloud'", 'backend must be "local" or "openai"'),
        ("cpu_extra_buffers = 'maybe'", 'cpu_extra_buffers must be'),
        ("[tiers.mini]\nprice = 0", "at least 1 credit"),
        ("this is = = not toml", "not valid TOML"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path, text, message):
    config = tmp_path / "gemma.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config_file=config, env={})


def test_a_new_tier_table_adds_a_tier(tmp_path):
    config = tmp_path / "gemma.toml"
    config.write_text("[tiers.max]\ndisplay_name = 'Gemma 3 27B'\nmodel_file = 'g27.gguf'\nprice = 9\n")
    settings = load_settings(config_file=config, env={"GEMMA_CHAT_MAX_PRICE": "8"})
    assert list(settings.tiers) == ["mini", "pro", "max"]
    assert (settings.tier("max").display_name, settings.tier("max").price) == ("Gemma 3 27B", 8)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read config file"):
        load_settings(config_file=tmp_path / "nope.toml", env={})


def test_the_admin_actions_table_applies_to_a_database_of_the_api_schema(tmp_path):
    path = tmp_path / "old.db"
    db.open_database(path, migrate=False)
    db.apply_migrations([m for m in db.MIGRATIONS if m[0] <= "0005_api"])
    db.database.execute_sql(
        "INSERT INTO users (username, password_hash, balance, created_at) VALUES ('old', 'x', 0, '2026-01-01')"
    )
    db.close_database()
    db.open_database(path)  # what the next start-up does
    try:
        assert db.applied_migrations() == [name for name, _ in db.MIGRATIONS]
        db.AdminAction.create(actor=None, actor_name="command line", action="unlock", target=1)
        assert [(a.actor_name, a.target.username) for a in db.AdminAction.select()] == [("command line", "old")]
    finally:
        db.close_database()


def test_a_database_that_cannot_be_opened_is_one_clear_error_without_the_password(tmp_path):
    from gemma_chat.errors import DatabaseUnavailableError

    with pytest.raises(DatabaseUnavailableError) as refused:
        db.open_database("postgresql://me:s3cret@127.0.0.1:1/gemma")
    assert refused.value.message.startswith(
        'Cannot open the database postgresql://me:***@127.0.0.1:1/gemma: connection to server at "127.0.0.1", port 1 failed'
    )
    assert "s3cret" not in refused.value.message and "\n" not in refused.value.message
    (tmp_path / "a folder").mkdir()
    with pytest.raises(DatabaseUnavailableError, match="Cannot open the database .*a folder: unable to open database file"):
        db.open_database(tmp_path / "a folder")
