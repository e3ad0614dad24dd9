"""Regenerate and Edit last message in Chromium (issue 11 points 4 and 9), and the chat at phone width.

One app for the module with the fault-injecting engine (tests/reliability/faults.py): "[fault:numbered]"
answers "Answer number N.", so a regenerated answer always differs from the old one, and every
generation's messages are logged to a file, so a test reads the prompt the engine got.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, expect

from browser_fixtures import ARTIFACTS
from conftest import MODEL_CACHE
from e2e.conftest import RunningApp
from e2e.test_browser import choose_model, expect_balance, sign_up
from e2e.test_chat_product import FAULTS_HOOK, message_box
from reliability.conftest import query

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ANSWER = re.compile(r"Answer number (\d+)\.")


@pytest.fixture(scope="module")
def replace_app(tmp_path_factory):
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    directory = tmp_path_factory.mktemp("replace-app")
    running = RunningApp(
        directory / "data", directory / "app.log", GEMMA_CHAT_TEST_PROMPT_LOG=str(directory / "prompts.jsonl"), **FAULTS_HOOK
    )
    running.prompt_log = directory / "prompts.jsonl"
    yield running
    running.stop()


def prompts(app) -> list[list[dict]]:
    """The messages of every generation so far, oldest first."""
    return [json.loads(line)["messages"] for line in app.prompt_log.read_text().splitlines()]


def regenerate_button(page: Page):
    return page.locator("#regenerate-button")


def edit_button(page: Page):
    return page.locator("#edit-button")


def send(page: Page, text: str) -> None:
    message_box(page).fill(text)
    message_box(page).press("Enter")


def start_a_long_answer(page: Page) -> None:
    """Send a message whose answer streams until Stop ([fault:hang]), and wait for its first text."""
    answers = page.get_by_test_id("bot")
    before = answers.count()  # the new answer's place: the last one may be an earlier answer for a moment
    send(page, "[fault:hang] Tell me a long story about the sea.")
    expect(answers.nth(before)).not_to_have_text(re.compile(r"^\s*(…)?\s*$"))


def shown_answer(page: Page) -> str:
    bot = page.get_by_test_id("bot").last
    expect(bot).to_contain_text(ANSWER)
    return ANSWER.search(bot.inner_text()).group(0)


def expect_notice(page: Page, text: str) -> None:
    """The reason beside the box (no popup, no red badge), then cleared so the next one is told apart."""
    expect(page.locator("#chat-notice")).to_contain_text(text)
    assert page.locator(".toast-body").count() == 0 and page.locator(".error").count() == 0


def last_rows(app, username: str, n: int) -> list[tuple]:
    return query(
        app.data_dir,
        "SELECT i.id, i.prompt, i.answer, i.replaces_id, i.credits_charged FROM interactions i JOIN users u ON u.id = i.user_id "
        "WHERE u.username = ? AND i.status <> 'refused' ORDER BY i.id DESC LIMIT ?",
        (username, n),
    )[::-1]


def test_regenerate_charges_the_price_on_its_label_and_replaces_the_answer(replace_app, page):
    sign_up(page, replace_app.url, "regen")
    expect_balance(page, 10)
    expect(regenerate_button(page)).to_have_text("Regenerate (1 credit)")
    choose_model(page, "for pro")
    expect(regenerate_button(page)).to_have_text("Regenerate (3 credits)")
    choose_model(page, "for mini")
    expect(regenerate_button(page)).to_have_text("Regenerate (1 credit)")

    send(page, "[fault:numbered] Say something.")
    expect_balance(page, 9)
    old = shown_answer(page)
    regenerate_button(page).click()
    expect_balance(page, 8)
    expect(page.get_by_test_id("bot").last).not_to_contain_text(old)
    new = shown_answer(page)
    expect(page.get_by_test_id("bot")).to_have_count(1)
    expect(page.get_by_test_id("user")).to_have_count(1)
    (old_id, _, old_answer, _, _), (_, prompt, new_answer, replaces_id, charged) = last_rows(replace_app, "regen", 2)
    assert (prompt, replaces_id, charged, old_answer, new_answer) == ("[fault:numbered] Say something.", old_id, 1, old, new)
    assert prompts(replace_app)[-1] == [{"role": "user", "content": "[fault:numbered] Say something."}]  # no old answer

    page.reload()
    expect_balance(page, 8)
    expect(page.get_by_test_id("bot")).to_have_count(1)
    expect(page.get_by_test_id("bot").last).to_contain_text(new)
    page.get_by_role("button", name="New chat", exact=True).click()
    expect(page.get_by_test_id("bot")).to_have_count(0)
    page.locator("#chat-list").get_by_text("Say something").click()  # one click in the sidebar
    expect(page.get_by_test_id("bot")).to_have_count(1)
    expect(page.get_by_test_id("bot").last).to_contain_text(new)

    send(page, "[fault:numbered] And then?")
    expect_balance(page, 7)
    assert prompts(replace_app)[-1] == [
        {"role": "user", "content": "[fault:numbered] Say something."},
        {"role": "assistant", "content": new},
        {"role": "user", "content": "[fault:numbered] And then?"},
    ]
    assert page.dialogs == []


def test_edit_last_message_and_send_replaces_the_turn(replace_app, page):
    sign_up(page, replace_app.url, "editor")
    expect_balance(page, 10)
    send(page, "[fault:numbered] First version.")
    expect_balance(page, 9)
    old = shown_answer(page)

    edit_button(page).click()
    expect(message_box(page)).to_have_value("[fault:numbered] First version.")
    expect(edit_button(page)).to_have_text("Cancel edit")
    message_box(page).fill("[fault:numbered] Second version.")
    message_box(page).press("Enter")
    expect_balance(page, 8)
    expect(page.get_by_test_id("user")).to_have_count(1)
    expect(page.get_by_test_id("user").last).to_have_text("[fault:numbered] Second version.")
    expect(page.get_by_test_id("bot").last).not_to_contain_text(old)
    expect(edit_button(page)).to_have_text("Edit last message")
    expect(message_box(page)).to_have_value("")
    (old_id, *_), (_, prompt, _, replaces_id, charged) = last_rows(replace_app, "editor", 2)
    assert (prompt, replaces_id, charged) == ("[fault:numbered] Second version.", old_id, 1)
    assert prompts(replace_app)[-1] == [{"role": "user", "content": "[fault:numbered] Second version."}]

    page.reload()
    expect(page.get_by_test_id("user")).to_have_count(1)
    expect(page.get_by_test_id("user").last).to_have_text("[fault:numbered] Second version.")


def test_too_few_credits_disable_regenerate_and_a_streaming_answer_both_and_nothing_changes(replace_app, page):
    sign_up(page, replace_app.url, "poor")
    expect_balance(page, 10)
    choose_model(page, "for pro")
    for n in range(3):
        send(page, f"[fault:numbered] Question {n}.")
        expect_balance(page, 10 - 3 * (n + 1))
    answer = shown_answer(page)
    rows = query(replace_app.data_dir, "SELECT COUNT(*) FROM interactions WHERE status <> 'refused'")

    expect(regenerate_button(page)).to_be_disabled()  # 1 credit does not pay for pro: it would be refused
    expect(regenerate_button(page)).to_have_text("Regenerate (3 credits)")
    edit_button(page).click()  # an edit can still be written (and sent after a top-up)
    expect(message_box(page)).to_have_value("[fault:numbered] Question 2.")
    message_box(page).press("Enter")
    expect_notice(page, "Not enough credits")
    expect(message_box(page)).to_have_value("[fault:numbered] Question 2.")  # the edit is still there to send
    expect(edit_button(page)).to_have_text("Cancel edit")
    expect_balance(page, 1)
    expect(page.get_by_test_id("bot")).to_have_count(3)
    expect(page.get_by_test_id("bot").last).to_contain_text(answer)
    assert query(replace_app.data_dir, "SELECT COUNT(*) FROM interactions WHERE status <> 'refused'") == rows

    edit_button(page).click()  # cancel the edit: the next message is a new turn
    expect(edit_button(page)).to_have_text("Edit last message")
    choose_model(page, "for mini")
    expect(regenerate_button(page)).to_be_enabled()  # 1 credit pays for mini
    start_a_long_answer(page)
    expect(regenerate_button(page)).to_be_disabled()
    expect(edit_button(page)).to_be_disabled()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("bot").nth(3)).to_contain_text("Stopped.")
    expect_balance(page, 0)  # the stopped answer had text: charged, and nothing else was
    expect(page.get_by_test_id("bot")).to_have_count(4)
    expect(regenerate_button(page)).to_be_disabled()  # nothing left to pay for it
    expect(edit_button(page)).to_be_enabled()


def test_no_horizontal_scrolling_at_phone_width(replace_app, page):
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 390, "height": 844})
    sign_up(page, replace_app.url, "phone")
    expect_balance(page, 10)
    send(page, "[fault:wide] " + "Long" * 40)
    expect_balance(page, 9)
    expect(page.get_by_test_id("bot").last.locator("pre code")).to_contain_text("1234567, " * 30)
    expect(page.get_by_test_id("bot").last).to_contain_text("W" * 200)
    page.screenshot(path=str(ARTIFACTS / "phone-width.png"), full_page=True)
    send(page, "[fault:markdown] A table and code, please.")
    expect_balance(page, 8)
    expect(page.get_by_test_id("bot").last).to_contain_text("· 1 credit")
    page.wait_for_timeout(300)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
