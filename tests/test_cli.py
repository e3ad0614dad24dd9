"""The CLI as a user runs it: real `python main.py ...` subprocesses on a temp data dir."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_env
from gemma_chat.backends.cpu_features import decide_extra_buffers
from gemma_chat.config import load_settings


@pytest.fixture
def cli(data_dir: Path):
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "main.py"), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=run_env(data_dir),
            timeout=120,
        )

    return run


def test_admin_creates_users_grants_credits_and_reads_the_report(cli, data_dir):
    created = cli("users", "create", "root", "--admin", "--password-stdin", stdin="long enough pw\n")
    assert created.returncode == 0, created.stderr
    assert "Created administrator root with 10 credits" in created.stdout
    assert cli("users", "create", "alice", "--password-stdin", stdin="long enough pw\n").returncode == 0

    granted = cli("credits", "grant", "alice", "25", "--note", "welcome", "--by", "root")
    assert granted.returncode == 0 and "balance now 35" in granted.stdout

    shown = cli("credits", "show", "alice")
    assert "balance 35, held 0, available 35" in shown.stdout and "welcome" in shown.stdout

    report = json.loads(cli("report", "--format", "json").stdout)
    assert set(report) >= {"requests_by_model", "credits_by_user", "errors"}
    alice = next(row for row in report["credits_by_user"] if row["username"] == "alice")
    assert alice == {"username": "alice", "credits_spent": 0, "credits_topped_up": 0, "credits_granted": 25, "balance": 35, "requests": 0}
    assert "Credits per user" in cli("report").stdout
    assert cli("report", "--format", "csv").stdout.startswith("section,model,")

    listed = cli("users", "list").stdout
    assert "root" in listed and "admin" in listed and "alice" in listed

    verified = cli("verify")
    assert verified.returncode == 0 and verified.stdout.startswith("healthy")
    assert (data_dir / "gemma_chat.db").exists()


def test_account_actions(cli):
    cli("users", "create", "alice", "--password-stdin", stdin="long enough pw\n")
    assert cli("users", "promote", "alice").stdout.strip() == "alice: admin, active."
    assert cli("users", "demote", "alice").stdout.strip() == "alice: user, active."
    assert cli("users", "disable", "alice").stdout.strip() == "alice: user, disabled."
    assert cli("users", "enable", "alice").stdout.strip() == "alice: user, active."
    assert cli("users", "unlock", "alice").returncode == 0


def test_verify_fails_with_the_problem_listed(cli, data_dir):
    cli("users", "create", "alice", "--password-stdin", stdin="long enough pw\n")
    with sqlite3.connect(data_dir / "gemma_chat.db") as connection:
        connection.execute("UPDATE users SET balance = 99")
    result = cli("verify")
    assert result.returncode == 1
    assert "alice: balance 99 but ledger entries sum to 10" in result.stdout


@pytest.mark.parametrize(
    "args, stdin, message, code",
    [
        (["users", "create", "x", "--password-stdin"], "long enough pw\n", "3 to 32 characters", 1),
        (["users", "create", "alice2", "--password-stdin"], "short\n", "at least 8", 1),
        (["users", "create", "alice2"], "", "--password-stdin", 1),
        (["users", "create", "ALICE", "--password-stdin"], "long enough pw\n", "taken", 1),
        (["credits", "grant", "nobody", "5", "--by", "alice"], None, "No user named 'nobody'", 1),
        (["credits", "grant", "alice", "five", "--by", "alice"], None, "whole number", 1),
        (["credits", "grant", "alice", "0", "--by", "alice"], None, "non-zero", 1),
        (["credits", "grant", "alice", "-50", "--by", "alice"], None, "Not enough credits", 1),
        (["credits", "grant", "alice", "5", "--by", "bob"], None, "bob is not an administrator", 1),
        (["report", "--since", "2025-02-30"], None, "YYYY-MM-DD", 1),
        (["report", "--format", "xml"], None, "invalid choice", 2),
        (["users", "frobnicate"], None, "invalid choice", 2),
        (["promote"], None, "invalid choice", 2),
    ],
)
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(cli, args, stdin, message, code):
    cli("users", "create", "alice", "--password-stdin", stdin="long enough pw\n")  # the first: an admin
    cli("users", "create", "bob", "--password-stdin", stdin="long enough pw\n")
    result = cli(*args, stdin=stdin)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_bad_config_file_is_reported_not_raised(cli, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("max_topup = 'many'")
    result = cli("verify", "--config", str(config))
    # Bad settings are bad input, as a bad flag is: exit 2 (as `download` always said), not 1 (refused).
    assert result.returncode == 2 and "max_topup" in result.stderr and "Traceback" not in result.stderr


def test_data_dir_flag_wins_over_the_environment(cli, tmp_path):
    other = tmp_path / "other"
    result = cli("verify", "--data-dir", str(other))
    assert result.returncode == 0 and (other / "gemma_chat.db").exists()


def test_models_explains_what_each_tier_will_run(cli):
    statuses = json.loads(cli("models", "--format", "json").stdout)
    assert [s["tier"] for s in statuses] == ["mini", "pro"]
    for status in statuses:
        assert {"tier", "model", "file", "quantization", "bytes_needed", "bytes_available", "status", "reason"} <= set(status)
        assert status["status"] == "bundled demo" and "bundled demo" in status["model"]
        assert "download_models.py" in status["reason"]
    table = cli("models").stdout
    assert "Gemma 3 270M (bundled demo) for pro" in table and "Q4_K_M" in table


def test_models_shows_a_remote_tier_and_whether_its_server_answers(cli, tmp_path, data_dir):
    from tests.e2e.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    config = tmp_path / "remote.toml"
    config.write_text(f'[tiers.pro]\nbackend = "openai"\nbase_url = "{url}"\napi = "completions"\n')
    mini, pro = json.loads(cli("models", "--config", str(config), "--format", "json").stdout)
    assert (pro["status"], pro["base_url"], pro["bytes_needed"]) == ("remote, down", url, None)  # no memory planned
    assert pro["reason"] == f"not reachable at {url}: connection refused"
    # What this machine learnt about llama.cpp's extra buffers (on, or off where they crashed).
    extra_buffers = decide_extra_buffers(load_settings(data_dir=data_dir, env={}))
    assert mini["status"] == "bundled demo" and mini["cpu_extra_buffers"] == extra_buffers.reason
    table = cli("models", "--config", str(config)).stdout
    assert url in table and "remote, down" in table and extra_buffers.summary in table


def test_models_with_strict_models_says_missing(cli):
    result = cli("models", "--strict-models", "--format", "json")
    assert result.returncode == 0
    assert {s["status"] for s in json.loads(result.stdout)} == {"missing"}


def test_an_administrator_resets_a_password_from_the_cli(cli):
    cli("users", "create", "alice", "--password-stdin", stdin="long enough pw\n")
    reset = cli("users", "passwd", "alice", "--password-stdin", stdin="brand new password\n")
    assert reset.returncode == 0 and reset.stdout.strip() == "New password set for alice; their sessions have ended."
    assert "at least 8" in cli("users", "passwd", "alice", "--password-stdin", stdin="short\n").stderr
    assert "No user named 'nobody'" in cli("users", "passwd", "nobody", "--password-stdin", stdin="x\n").stderr


def test_credits_grant_without_by_records_the_command_line_as_the_actor(cli, data_dir):
    cli("users", "create", "alice", "--password-stdin", stdin="long enough pw\n")
    granted = cli("credits", "grant", "alice", "5", "--note", "refund")
    assert granted.returncode == 0 and "balance now 15" in granted.stdout
    with sqlite3.connect(data_dir / "gemma_chat.db") as connection:
        row = connection.execute("SELECT kind, amount, actor_id, note FROM ledger_entries ORDER BY id DESC LIMIT 1").fetchone()
    assert row == ("grant", 5, None, "[command line] refund")
    with sqlite3.connect(data_dir / "gemma_chat.db") as connection:
        actions = connection.execute(
            "SELECT a.actor_id, a.actor_name, a.action, u.username, a.detail FROM admin_actions a "
            "JOIN users u ON u.id = a.target_id ORDER BY a.id"
        ).fetchall()
    assert actions == [(None, "command line", "create_user", "alice", "administrator"),
                       (None, "command line", "grant", "alice", "+5 credits: refund")]
    report = json.loads(cli("report", "--format", "json").stdout)
    assert report["model_performance"] == [] and report["active_users_by_day"] == []
    assert "Model performance" in cli("report").stdout


# Tops alice up once a millisecond until killed: the app writing while the backup runs.
BUSY_WRITER = """
import sys
from gemma_chat.accounts import auth
from gemma_chat.billing import ledger
from gemma_chat.store.db import open_database
open_database(sys.argv[1])
alice = auth.find_user("alice")
while True:
    ledger.top_up(alice.id, 1, maximum=1000)
"""


def ledger_entries(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT COUNT(*) FROM ledger_entries").fetchone()[0]


def test_db_backup_copies_a_consistent_database_while_it_is_written_and_never_overwrites(cli, data_dir, tmp_path):
    assert "schema up to date" in cli("db", "migrate").stdout
    cli("users", "create", "alice", "--password-stdin", stdin="long enough pw\n")
    live = data_dir / "gemma_chat.db"
    writer = subprocess.Popen([sys.executable, "-c", BUSY_WRITER, str(live)], cwd=ROOT, env=run_env(data_dir))
    try:
        while ledger_entries(live) < 50:
            assert writer.poll() is None, "the writer died"
        backup = cli("db", "backup", str(tmp_path / "copy.db"))
        written_during = ledger_entries(live)
    finally:
        writer.kill()
        writer.wait()
    assert backup.returncode == 0, backup.stderr
    assert "The copy passes the integrity, foreign-key and ledger checks." in backup.stdout
    copied = ledger_entries(tmp_path / "copy.db")
    assert 50 <= copied <= written_during  # one instant of the live database, taken while it grew

    restored = tmp_path / "restored"  # the copy is a data dir's database the app opens as it is
    restored.mkdir()
    (tmp_path / "copy.db").rename(restored / "gemma_chat.db")
    verified = subprocess.run([sys.executable, str(ROOT / "main.py"), "verify"], capture_output=True, text=True,
                              env=run_env(restored), timeout=120)
    assert verified.returncode == 0 and verified.stdout.startswith("healthy"), verified.stdout + verified.stderr
    assert f"balance {copied + 9}" in subprocess.run(  # 10 signup credits + a credit per top-up entry
        [sys.executable, str(ROOT / "main.py"), "credits", "show", "alice"], capture_output=True, text=True,
        env=run_env(restored), timeout=120,
    ).stdout

    again = cli("db", "backup", str(restored / "gemma_chat.db"))
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert ledger_entries(restored / "gemma_chat.db") == copied  # untouched
    nowhere = cli("db", "backup", str(tmp_path / "missing" / "x.db"))
    assert nowhere.returncode == 1 and "does not exist" in nowhere.stderr


# --- PostgreSQL: verify and db copy on a real server (tests/postgres.py) ----------------------


def with_password(url: str, password: str) -> str:
    """The test server trusts every local connection: a password in the URL is accepted and ignored."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@", 1)


def test_verify_on_postgresql_is_healthy_then_reports_a_balance_changed_by_hand(cli, postgres_url):
    import psycopg

    url = with_password(postgres_url, "s3cret")
    assert cli("users", "create", "alice", "--password-stdin", "--database-url", url, stdin="long enough pw\n").returncode == 0
    healthy = cli("verify", "--database-url", url)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.startswith("healthy: postgresql://postgres:***@/")
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("UPDATE users SET balance = balance + 5")
    broken = cli("verify", "--database-url", url)
    assert broken.returncode == 1
    assert "- user alice: balance 15 but ledger entries sum to 10" in broken.stdout
    assert "s3cret" not in broken.stdout + broken.stderr + healthy.stdout


def test_db_copy_moves_the_sqlite_database_to_postgresql_and_the_cli_uses_it(cli, data_dir, postgres_url):
    cli("users", "create", "root", "--admin", "--password-stdin", stdin="long enough pw\n")
    cli("users", "create", "alice", "--password-stdin", stdin="long enough pw\n")
    cli("credits", "grant", "alice", "5", "--note", "welcome")
    url = with_password(postgres_url, "s3cret")

    copied = cli("db", "copy", "--to", url)
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.strip().splitlines() == [
        f"Copied {data_dir / 'gemma_chat.db'} to {url.replace(':s3cret@', ':***@')}: 2 accounts, 3 ledger entries, "
        "0 interactions; the books match and verify is clean."
    ]
    assert "s3cret" not in copied.stdout + copied.stderr
    assert "balance 15, held 0" in cli("credits", "show", "alice", "--database-url", url).stdout
    assert cli("users", "create", "bob", "--password-stdin", "--database-url", url, stdin="long enough pw\n").returncode == 0
    assert cli("verify", "--database-url", url).returncode == 0

    again = cli("db", "copy", "--to", url)
    assert again.returncode == 1
    assert "is not empty (admin_actions, ledger_entries, users already have rows)" in again.stderr
    assert "Traceback" not in again.stderr and "s3cret" not in again.stderr


@pytest.mark.parametrize(
    "to, message",
    [
        ("sqlite:///other.db", "--to must be a PostgreSQL URL"),
        ("postgresql://me:s3cret@127.0.0.1:1/db", 'Cannot open the database postgresql://me:***@127.0.0.1:1/db: connection to server at "127.0.0.1", port 1 failed'),
    ],
)
def test_db_copy_refuses_bad_targets_in_one_line(cli, to, message):
    cli("users", "create", "alice", "--password-stdin", stdin="long enough pw\n")
    result = cli("db", "copy", "--to", to)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1 and "s3cret" not in result.stderr


def test_db_copy_without_a_sqlite_database_says_so(cli, data_dir):
    result = cli("db", "copy", "--to", "postgresql://me@/db")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: There is no SQLite database at {data_dir / 'gemma_chat.db'} to copy."
