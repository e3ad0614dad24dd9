"""The chat product in Chromium (issue 11): keys, rendered answers, chats, account, admin, phone width.

One app for the module, started with the fault-injecting engine (tests/reliability/faults.py), so a
marker in a message can ask for a slow answer or a markdown one; anything else is the real model.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from conftest import MODEL_CACHE
from e2e.conftest import RunningApp
from e2e.test_browser import expect_balance, sign_up

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Both hooks: [fault:hang] holds the worker mid-answer until Stop, so Esc cannot arrive too late.
FAULTS_HOOK = {
    "GEMMA_CHAT_FAULT_INJECTION": "tests.reliability.faults:inject",
    "GEMMA_CHAT_WORKER_FAULT_INJECTION": "tests.reliability.worker_faults:install",
}


@pytest.fixture(scope="module")
def product_app(tmp_path_factory):
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    directory = tmp_path_factory.mktemp("product-app")
    running = RunningApp(directory / "data", directory / "app.log", **FAULTS_HOOK)
    yield running
    running.stop()


def message_box(page: Page):
    return page.locator("#message textarea")


def test_enter_sends_shift_enter_adds_a_line_and_escape_stops(product_app, page):
    sign_up(page, product_app.url, "keys")
    expect_balance(page, 10)
    box = message_box(page)
    box.fill("line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    expect(box).to_have_value("line one\nline two")  # a new line, nothing sent
    page.wait_for_timeout(500)
    expect_balance(page, 10)

    box.press("Enter")
    expect_balance(page, 9)
    expect(box).to_have_value("")
    expect(page.get_by_test_id("user").last).to_contain_text("line two")

    box.fill("[fault:hang] Tell me a long story about the sea.")
    box.press("Enter")
    expect(page.get_by_test_id("bot").nth(1)).not_to_have_text(re.compile(r"^\s*(…)?\s*$"))  # text is streaming
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("bot").nth(1)).to_contain_text("Stopped.")


def nothing_ran(page: Page) -> None:
    assert page.dialogs == []
    assert page.title() == "gemma-chat"
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0


def test_answers_render_markdown_and_code_while_markup_stays_inert(product_app, page):
    from reliability.faults import MARKDOWN_ANSWER  # noqa: F401 — the answer this test reads

    sign_up(page, product_app.url, "reader")
    expect_balance(page, 10)
    prompt = "[fault:markdown] <img src=x onerror=\"document.title='pwned'\"> **hello**"
    message_box(page).fill(prompt)
    message_box(page).press("Enter")
    expect_balance(page, 9)
    user = page.get_by_test_id("user").last
    expect(user).to_contain_text("<img src=x onerror=")  # HTML in a prompt shows as text
    expect(user.locator("strong")).to_have_text("hello")
    bot = page.get_by_test_id("bot").last
    expect(bot.locator("h2")).to_have_text("Plan")
    expect(bot.locator("li strong")).to_have_text("first")
    expect(bot.locator("table td").first).to_have_text("a")
    expect(bot.locator("a[href='https://example.com/docs']")).to_have_text("the docs")
    expect(bot.get_by_text("a trap")).to_be_visible()  # the javascript: link is text, not a link
    code = bot.locator("pre code")
    expect(code).to_contain_text('if a < b and "<b>" != \'&\':')  # code keeps its characters
    assert code.locator(".token").count() > 3  # highlighted
    expect(bot.locator("button.copy_code_button")).to_have_count(1)
    expect(bot).to_contain_text("<script>document.title='pwned'</script>")
    expect(bot).to_contain_text(re.compile(r"\d+ tokens? · [\d.]+ tokens/s · [\d.]+ s"))
    expect(bot).to_contain_text("— Gemma 3 270M (bundled demo) for mini · 1 credit")
    page.wait_for_timeout(300)
    nothing_ran(page)


def test_a_reload_keeps_the_chat_and_an_old_chat_opens_from_the_list(product_app, page):
    sign_up(page, product_app.url, "resumer")
    expect_balance(page, 10)
    message_box(page).fill("Remember the word lighthouse.")
    message_box(page).press("Enter")
    expect_balance(page, 9)
    page.reload()
    expect_balance(page, 9)  # still signed in
    expect(page.get_by_test_id("user").first).to_have_text("Remember the word lighthouse.")

    page.get_by_role("button", name="New chat", exact=True).click()
    expect(page.get_by_test_id("user")).to_have_count(0)
    message_box(page).fill("A second chat.")
    message_box(page).press("Enter")
    expect_balance(page, 8)

    sidebar = page.locator("#chat-list")
    expect(sidebar.locator(".gc-chat-link")).to_have_count(2)
    sidebar.get_by_text("Remember the word lighthouse.").click()  # one click opens it
    expect(page.get_by_test_id("user").first).to_have_text("Remember the word lighthouse.")
    expect(page.get_by_test_id("user")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"\?chat=\d+$"))
