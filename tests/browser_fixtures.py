"""Session fixtures for the browser tests (tests/e2e/, tests/reliability/): one Chromium, a page per test.

One plugin for the whole run, because two sync Playwright instances cannot be alive in one process.
Without Chromium the browser tests are skipped, and the run ends with a line that says how many and
how to install it; with GEMMA_CHAT_REQUIRE_BROWSER=1 (.ci/run sets it) they fail instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
INSTALL_CHROMIUM = "sudo apt install chromium"
REQUIRE_ENV = "GEMMA_CHAT_REQUIRE_BROWSER"
MISSING = f"/usr/bin/chromium is missing (Debian/Ubuntu: {INSTALL_CHROMIUM})"


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{MISSING}, and {REQUIRE_ENV}=1 requires the browser tests to run")
        pytest.skip(f"BROWSER TESTS SKIPPED: {MISSING}. .ci/run installs it, so CI always runs them.")
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


def pytest_unconfigure(config):
    """A skipped browser test is a hole in the run: say so after the last line pytest prints."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = [r for r in reporter.stats.get("skipped", []) if "BROWSER TESTS SKIPPED" in str(r.longrepr)]
    if skipped:
        reporter.write_line(
            f"{len(skipped)} browser tests were SKIPPED: {MISSING}. Install it and run make test again.",
            yellow=True, bold=True,
        )
