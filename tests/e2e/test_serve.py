"""`python main.py` as a process: start-up plan, one app per data dir, clean shutdown, recovery."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys

import psutil
import pytest

from conftest import ROOT, run_env

from .conftest import RunningApp

pytestmark = pytest.mark.slow


def test_start_prints_the_plan_and_ctrl_c_shuts_down_cleanly(tmp_path):
    app = RunningApp(tmp_path / "data", tmp_path / "app.log")
    app.process.send_signal(signal.SIGINT)
    assert app.process.wait(timeout=30) == 0
    log = app.log_path.read_text()
    assert "mini: Gemma 3 270M (bundled demo) for mini loaded" in log
    assert f"running at http://127.0.0.1:{app.port}/" in log
    assert "Shutting down" in log and "Traceback" not in log


def test_ctrl_c_in_a_terminal_stops_the_app_and_its_workers_without_a_crash(tmp_path):
    app = RunningApp(tmp_path / "data", tmp_path / "app.log", own_process_group=True)
    workers = [c for c in psutil.Process(app.process.pid).children() if "gemma_chat.backends.worker" in c.cmdline()]
    assert len(workers) == 2  # one per tier
    os.killpg(app.process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
    assert app.process.wait(timeout=30) == 0
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert alive == []
    log = app.log_path.read_text()
    assert "Shutting down" in log and "Traceback" not in log and "KeyboardInterrupt" not in log
    # The first start on a CPU where llama.cpp's extra buffers crash restarts once with them off:
    # expected there, and the only restart allowed.
    restarts = [line for line in log.splitlines() if "restarting" in line and "CPU extra buffers" not in line]
    assert restarts == [] and "worker stopped" not in log


def test_a_second_app_on_the_same_data_dir_is_refused(tmp_path):
    app = RunningApp(tmp_path / "data", tmp_path / "app.log")
    try:
        second = subprocess.run(
            [sys.executable, str(ROOT / "main.py"), "--no-browser", "--port", "1", "--data-dir", str(app.data_dir)],
            capture_output=True, text=True, env=run_env(app.data_dir), timeout=60,
        )
        assert second.returncode == 1
        assert "already running" in second.stderr and "Traceback" not in second.stderr
    finally:
        app.stop()


def test_start_up_releases_holds_left_by_a_crash(tmp_path):
    data_dir = tmp_path / "data"
    created = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "users", "create", "alice", "--password-stdin", "--data-dir", str(data_dir)],
        input="long enough pw\n", capture_output=True, text=True, env=run_env(data_dir), timeout=60,
    )
    assert created.returncode == 0, created.stderr
    with sqlite3.connect(data_dir / "gemma_chat.db") as db:  # what a SIGKILL mid-answer leaves behind
        db.execute("UPDATE users SET held = 3")
        db.execute("INSERT INTO holds (request_id, user_id, amount, created_at) VALUES ('r1', 1, 3, '2026-01-01 00:00:00')")
        db.execute(
            "INSERT INTO interactions (request_id, user_id, tier, model_name, prompt, status, created_at) "
            "VALUES ('r1', 1, 'pro', 'm', 'hello', 'pending', '2026-01-01 00:00:00')"
        )
    app = RunningApp(data_dir, tmp_path / "app.log")
    app.stop()
    assert "released 1 holds uncharged" in app.log_path.read_text()
    with sqlite3.connect(data_dir / "gemma_chat.db") as db:
        assert db.execute("SELECT balance, held FROM users").fetchone() == (10, 0)
        assert db.execute("SELECT status FROM interactions").fetchone() == ("interrupted",)


def test_a_port_in_use_is_one_clear_line(tmp_path):
    app = RunningApp(tmp_path / "data", tmp_path / "app.log")
    try:
        other = tmp_path / "other"
        second = subprocess.run(
            [sys.executable, str(ROOT / "main.py"), "--no-browser", "--port", str(app.port), "--data-dir", str(other)],
            capture_output=True, text=True, env=run_env(other), timeout=120,
        )
        assert second.returncode == 1 and "--port" in second.stderr and "Traceback" not in second.stderr
    finally:
        app.stop()
