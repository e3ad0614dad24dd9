"""The README's screenshots, retaken from a real running app in Chromium.

`python scripts/screenshots.py` starts `main.py` on a scratch data directory with the test models
(tests/conftest.py MODEL_CACHE: `make test` downloads them), signs up an administrator, asks the
model a few questions in two chats, and saves under docs/:

- screenshot-chat.png        the chat with the sidebar, 1280x800, English
- screenshot-phone.png       the chat on a phone, 390x844, Russian
- screenshot-admin.png       Admin → Reports, 1280x800
- screenshot-admin-users.png Admin → Users

Needs Playwright and /usr/bin/chromium, as the browser tests do. The answers are the small test
model's, so they differ from run to run.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gemma_chat.config import environment_without_settings  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
MODELS = Path(os.environ.get("GEMMA_CHAT_TEST_MODELS", Path.home() / ".cache" / "gemma-chat-test" / "models"))
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PASSWORD = "long enough pw"
QUESTIONS = [
    ("Write a haiku about the sea.", "Now one about mountains."),
    ("Name three primary colours.",),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(data_dir: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    environment = environment_without_settings()
    environment.update(
        GEMMA_CHAT_MODELS_DIR=str(MODELS), GEMMA_CHAT_BCRYPT_ROUNDS="4",
        GEMMA_CHAT_MINI_MAX_TOKENS="48", GEMMA_CHAT_PRO_MAX_TOKENS="48",
        GEMMA_CHAT_MINI_N_CTX="2048", GEMMA_CHAT_PRO_N_CTX="2048",
    )
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--no-browser", "--port", str(port), "--data-dir", str(data_dir)],
        env=environment, stdout=log_path.open("w"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the app exited:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200 and "is running at" in log_path.read_text():
                    return process, url
        except OSError:
            pass
        time.sleep(0.3)
    process.terminate()
    raise SystemExit(f"the app did not come up:\n{log_path.read_text()}")


def sign_in(page, url: str, username: str, *, create: bool, labels=("Username", "Password", "Log in")) -> None:
    page.goto(url)
    page.get_by_label(labels[0], exact=True).fill(username)
    page.get_by_label(labels[1], exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create account" if create else labels[2]).click()
    page.locator("#balance").wait_for(state="visible", timeout=60_000)


def ask(page, question: str) -> None:
    """Send a question and wait until its answer has ended (Send is back in place of Stop)."""
    page.locator("#message textarea").fill(question)
    page.locator("#message textarea").press("Enter")
    page.locator("#stop-button").wait_for(state="visible", timeout=60_000)
    page.locator("#send-button").wait_for(state="visible", timeout=180_000)
    page.wait_for_timeout(500)


def take(out: Path, browser, url: str) -> list[Path]:
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    saved = []
    desktop = browser.new_context(viewport=DESKTOP, locale="en-US")
    page = desktop.new_page()
    sign_in(page, url, "ada", create=True)  # the first account: the administrator
    for chat in QUESTIONS:
        page.locator("#new-chat-button").click()
        for question in chat:
            ask(page, question)
    page.locator(".gc-chat-link").first.wait_for()
    page.locator(".gc-chat-link").filter(has_text=re.compile("haiku", re.I)).first.click()
    expect(page.get_by_test_id("user").first).to_contain_text("haiku")
    page.wait_for_timeout(800)
    saved.append(out / "screenshot-chat.png")
    page.screenshot(path=str(saved[-1]))

    page.get_by_role("tab", name="Admin").click()
    page.get_by_role("tab", name="Reports").click()
    page.wait_for_timeout(2500)  # the charts draw
    saved.append(out / "screenshot-admin.png")
    page.screenshot(path=str(saved[-1]))
    page.get_by_role("tab", name="Users").click()
    expect(page.locator("#users-table")).to_contain_text("ada")
    page.wait_for_timeout(800)
    saved.append(out / "screenshot-admin-users.png")
    page.screenshot(path=str(saved[-1]))
    desktop.close()

    phone = browser.new_context(viewport=PHONE, locale="ru-RU", is_mobile=True, has_touch=True, device_scale_factor=2)
    page = phone.new_page()
    sign_in(page, url, "ada", create=False, labels=("Имя пользователя", "Пароль", "Войти"))
    ask(page, "Привет! Как дела?")
    saved.append(out / "screenshot-phone.png")
    page.screenshot(path=str(saved[-1]))
    phone.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the PNGs go (default docs/)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        process, url = start_app(Path(directory) / "data", Path(directory) / "app.log")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
                try:
                    for path in take(args.out, browser, url):
                        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
                finally:
                    browser.close()
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
