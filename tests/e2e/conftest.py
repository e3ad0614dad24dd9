"""The app as a user meets it: `python main.py` in a subprocess, driven by a real Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import FAST_BCRYPT, MODEL_CACHE, ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningApp:
    def __init__(self, data_dir: Path, log_path: Path, **env: str):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("GEMMA_CHAT_")}
        environment.update(
            GEMMA_CHAT_MODELS_DIR=str(MODEL_CACHE),
            GEMMA_CHAT_BCRYPT_ROUNDS=str(FAST_BCRYPT),
            GEMMA_CHAT_MINI_MAX_TOKENS="24",
            GEMMA_CHAT_PRO_MAX_TOKENS="24",
            GEMMA_CHAT_MINI_N_CTX="1024",
            GEMMA_CHAT_PRO_N_CTX="1024",
        )
        environment.update(env)
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--no-browser", "--port", str(self.port), "--data-dir", str(data_dir)],
            env=environment,
            stdout=log_path.open("w"),
            stderr=subprocess.STDOUT,
        )
        self._wait_until_up()

    def _wait_until_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app exited:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
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


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            "BROWSER TESTS SKIPPED: /usr/bin/chromium is missing (Debian/Ubuntu: sudo apt install chromium). "
            ".ci/run installs it, so CI always runs them."
        )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a first answer on 2 busy cores can take seconds
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(30_000)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
