"""The app as a user meets it: `python main.py` in a subprocess, driven by a real Chromium.

The browser fixtures are tests/browser_fixtures.py, shared with tests/reliability/.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import FAST_BCRYPT, MODEL_CACHE, ROOT
from gemma_chat.config import environment_without_settings

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sigint_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class RunningApp:
    def __init__(self, data_dir: Path, log_path: Path, *, own_process_group: bool = False, **env: str):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        environment = environment_without_settings()
        environment.update(
            GEMMA_CHAT_MODELS_DIR=str(MODEL_CACHE),
            GEMMA_CHAT_BCRYPT_ROUNDS=str(FAST_BCRYPT),
            GEMMA_CHAT_MINI_MAX_TOKENS="24",
            GEMMA_CHAT_PRO_MAX_TOKENS="24",
            GEMMA_CHAT_MINI_N_CTX="1024",
            GEMMA_CHAT_PRO_N_CTX="1024",
            # One slot per tier, as in tests.conftest.demo_settings: a second answer waits (busy/queue tests).
            GEMMA_CHAT_MINI_PARALLEL="1",
            GEMMA_CHAT_PRO_PARALLEL="1",
            # Tests sign many users in from one address; tests/reliability/test_edge.py runs the defaults.
            GEMMA_CHAT_SIGNIN_ATTEMPTS_PER_MINUTE="100000",
            GEMMA_CHAT_REGISTRATIONS_PER_HOUR="100000",
        )
        environment.update(env)
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--no-browser", "--port", str(self.port), "--data-dir", str(data_dir)],
            env=environment,
            stdout=log_path.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=own_process_group,  # as a terminal runs it: Ctrl-C reaches the whole group
            # As a terminal starts it, Ctrl-C included: a test run launched in the background by a
            # non-interactive shell inherits SIGINT ignored, and the app would keep that.
            preexec_fn=_sigint_as_in_a_terminal,
        )
        self._wait_until_up()

    def _wait_until_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app exited:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    # Up once it answers and has printed so: a signal sent before that line lands in launch().
                    if response.status == 200 and "is running at" in self.log_path.read_text():
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the app did not come up:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def app(tmp_path):
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    running = RunningApp(tmp_path / "data", tmp_path / "app.log")
    yield running
    running.stop()
