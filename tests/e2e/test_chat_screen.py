"""The chat screen of issue 19 in Chromium, desktop (1280×800) and phone (390×844), English and Russian:
nothing typed is lost, errors guide instead of popping up, the sidebar opens chats in one click, each
chat has a URL, its system prompt and model come back with it, and a regenerated answer keeps the
earlier one to page back to.

One app for the module with the fault-injecting engine (tests/reliability/faults.py): "[fault:numbered]"
answers at once, "[fault:hang]" streams until Stop, and every generation's messages are logged, so a
test reads what the model was asked.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from e2e.test_browser import SHOTS, choose_model, expect_balance, log_out, sign_up
from e2e.test_chat_product import message_box
from e2e.test_chat_replace import (  # noqa: F401 (replace_app: the module's app)
    prompts, replace_app, shown_answer, start_a_long_answer,
)
from reliability.conftest import query

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def no_error_anywhere(page: Page) -> None:
    """No popup and no red "Error" badge over any component."""
    expect(page.locator(".toast-body")).to_have_count(0)
    expect(page.get_by_text(re.compile(r"^\s*Error\s*$"))).to_have_count(0)


def user_bubbles(page: Page):
    return page.get_by_test_id("user")


def chat_url_id(page: Page) -> str:
    found = re.search(r"[?&]chat=(\d+)", page.url)
    return found.group(1) if found else ""


def top_up(page: Page, credits: int) -> None:
    page.get_by_role("tab", name="Top up").click()
    page.get_by_label("Credits to add").fill(str(credits))
    page.get_by_role("button", name="Top up", exact=True).click()
    expect(page.locator("#topup-message")).to_contain_text("Added")
    page.get_by_role("tab", name="Chat", exact=True).click()


def test_no_popup_on_arrival_and_log_out_lands_on_the_sign_in_form(replace_app, page):
    page.set_viewport_size(DESKTOP)
    page.goto(replace_app.url)
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.wait_for_timeout(1500)  # the page's first events have run
    no_error_anywhere(page)
    sign_up(page, replace_app.url, "arrival")
    expect_balance(page, 10)
    no_error_anywhere(page)
    page.get_by_role("button", name="Log out", exact=True).click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.wait_for_timeout(1500)
    no_error_anywhere(page)
    expect(page.get_by_text("belongs to another sign-in")).to_have_count(0)


def test_enter_while_an_answer_streams_keeps_the_message_and_send_is_stop_meanwhile(replace_app, page):
    page.set_viewport_size(DESKTOP)
    sign_up(page, replace_app.url, "typist")
    expect_balance(page, 10)
    send_button, stop_button = page.locator("#send-button"), page.locator("#stop-button")
    expect(stop_button).to_be_hidden()
    start_a_long_answer(page)  # by Enter
    expect(send_button).to_be_hidden()
    expect(stop_button).to_be_visible()
    message_box(page).fill("[fault:numbered] And the next question.")
    message_box(page).press("Enter")  # while the answer streams
    page.wait_for_timeout(800)
    expect(message_box(page)).to_have_value("[fault:numbered] And the next question.")  # kept, not dropped
    expect(user_bubbles(page)).to_have_count(1)
    stop_button.click()
    expect(page.get_by_test_id("bot").last).to_contain_text("Stopped.")
    expect(send_button).to_be_visible()
    expect(message_box(page)).to_have_value("[fault:numbered] And the next question.")
    message_box(page).press("Enter")
    expect(user_bubbles(page)).to_have_count(2)
    expect(user_bubbles(page).last).to_have_text("[fault:numbered] And the next question.")
    expect(message_box(page)).to_have_value("")
    no_error_anywhere(page)


def test_a_refused_message_stays_and_retry_after_a_top_up_sends_that_message(replace_app, page):
    page.set_viewport_size(DESKTOP)
    sign_up(page, replace_app.url, "refused")
    expect_balance(page, 10)
    choose_model(page, "for pro")
    for n in range(3):
        message_box(page).fill(f"[fault:numbered] Question {n}.")
        message_box(page).press("Enter")
        expect_balance(page, 10 - 3 * (n + 1))
        if n == 1:  # 4 credits left, 3 an answer: the hint comes before the refusal does
            expect(page.locator("#chat-notice")).to_contain_text("Balance low: 4 credits left, 3 per answer")
    expect(page.locator("#chat-notice")).to_contain_text("does not pay for an answer with this model")
    message_box(page).fill("[fault:numbered] Which planet is largest?")
    message_box(page).press("Enter")
    expect(page.locator("#chat-notice")).to_contain_text("Not enough credits")
    expect(user_bubbles(page).last).to_have_text("[fault:numbered] Which planet is largest?")
    expect(page.get_by_test_id("bot").last).to_contain_text("Not sent")
    no_error_anywhere(page)
    page.reload()
    expect(user_bubbles(page).last).to_have_text("[fault:numbered] Which planet is largest?")  # kept over a reload
    expect(page.get_by_test_id("bot").last).to_contain_text("Not sent")

    expect(page.locator("#regenerate-button")).to_be_disabled()  # 1 credit cannot pay for pro: a retry would be refused
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)

    top_up(page, 5)
    expect_balance(page, 6)
    expect(page.locator("#regenerate-button")).to_be_enabled()
    asked = len(prompts(replace_app))
    page.get_by_test_id("bot").last.hover()
    page.get_by_role("button", name="Retry").last.click()
    expect_balance(page, 3)
    expect(page.get_by_test_id("bot").last).to_contain_text(re.compile(r"Answer number \d+\."))
    assert prompts(replace_app)[asked][-1]["content"] == "[fault:numbered] Which planet is largest?"  # that message
    expect(user_bubbles(page)).to_have_count(4)



def signed_up_with_one_answer(page: Page, url: str, username: str, message: str) -> None:
    """A new account (10 credits) that has sent `message` and been charged for its answer."""
    sign_up(page, url, username)
    expect_balance(page, 10)
    message_box(page).fill(message)
    message_box(page).press("Enter")
    expect_balance(page, 9)

def test_one_click_opens_a_chat_and_reload_and_back_return_to_it_by_url(replace_app, page):
    page.set_viewport_size(DESKTOP)
    signed_up_with_one_answer(page, replace_app.url, "walker", "[fault:numbered] First chat.")
    expect(page).to_have_url(re.compile(r"\?chat=\d+$"))
    first = chat_url_id(page)
    page.locator("#new-chat-button").click()
    expect(user_bubbles(page)).to_have_count(0)
    message_box(page).fill("[fault:numbered] Second chat.")
    message_box(page).press("Enter")
    expect_balance(page, 8)
    expect(page).not_to_have_url(re.compile(rf"chat={first}$"))
    second = chat_url_id(page)
    links = page.locator("#chat-list .gc-chat-link")
    expect(links).to_have_text(["[fault:numbered] Second chat.", "[fault:numbered] First chat."])  # newest first

    links.filter(has_text="First chat.").click()  # one click
    expect(user_bubbles(page)).to_have_text(["[fault:numbered] First chat."])
    expect(page).to_have_url(re.compile(rf"\?chat={first}$"))
    page.go_back()
    expect(page).to_have_url(re.compile(rf"\?chat={second}$"))
    expect(user_bubbles(page)).to_have_text(["[fault:numbered] Second chat."])
    page.goto(replace_app.url + f"?chat={first}")  # a bookmark
    expect(user_bubbles(page)).to_have_text(["[fault:numbered] First chat."])
    page.reload()
    expect(user_bubbles(page)).to_have_text(["[fault:numbered] First chat."])
    no_error_anywhere(page)


def test_rename_delete_and_invalid_actions_answer_beside_them_without_error_badges(replace_app, page):
    page.set_viewport_size(DESKTOP)
    signed_up_with_one_answer(page, replace_app.url, "tidy", "[fault:numbered] Keep me.")
    row = page.locator("#chat-list .gc-chat").first
    row.locator("summary").click()
    row.get_by_role("button", name="Rename").click()
    expect(page.locator("#rename-title input")).to_have_value("[fault:numbered] Keep me.")
    page.locator("#rename-title input").fill("   ")
    page.locator("#rename-save").click()
    expect(page.locator("#sidebar-notice")).to_contain_text("Enter a title for the chat.")
    no_error_anywhere(page)
    page.locator("#rename-title input").fill("Kept")
    page.locator("#rename-save").click()
    expect(page.locator("#chat-list .gc-chat-link")).to_have_text(["Kept"])

    row = page.locator("#chat-list .gc-chat").first
    row.locator("summary").click()
    row.get_by_role("button", name="Delete…").click()
    expect(page.locator("#delete-question")).to_contain_text("Delete “Kept”?")
    page.locator("#delete-cancel").click()
    expect(page.locator("#chat-list .gc-chat-link")).to_have_text(["Kept"])  # asking deleted nothing
    row.locator("summary").click()
    row.get_by_role("button", name="Delete…").click()
    page.locator("#delete-confirm").click()
    expect(page.locator("#chat-list .gc-chat-link")).to_have_count(0)
    expect(user_bubbles(page)).to_have_count(0)  # it was open
    message_box(page).fill("   ")
    message_box(page).press("Enter")
    expect(page.locator("#chat-notice")).to_contain_text("Type a message first.")
    no_error_anywhere(page)


def test_a_chat_keeps_its_system_prompt_and_model_over_a_reload(replace_app, page):
    page.set_viewport_size(DESKTOP)
    sign_up(page, replace_app.url, "settler")
    expect_balance(page, 10)
    page.get_by_text("Chat settings").click()
    page.get_by_label("System prompt").fill("Answer like a pirate.")
    choose_model(page, "for pro")
    message_box(page).fill("[fault:numbered] Name a colour.")
    message_box(page).press("Enter")
    expect_balance(page, 7)
    assert prompts(replace_app)[-1][-1]["content"] == "Answer like a pirate.\n\n[fault:numbered] Name a colour."
    page.reload()
    expect_balance(page, 7)
    expect(page.locator("#model input")).to_have_value(re.compile("for pro"))
    page.get_by_text("Chat settings").click()
    expect(page.get_by_label("System prompt")).to_have_value("Answer like a pirate.")
    page.locator("#new-chat-button").click()
    expect(page.get_by_label("System prompt")).to_have_value("")


def test_phone_the_composer_is_on_the_first_screen_and_the_chats_are_a_drawer(replace_app, browser):
    context = browser.new_context(viewport=PHONE, locale="ru-RU")
    page = context.new_page()
    try:
        page.set_default_timeout(30_000)
        page.goto(replace_app.url)
        page.get_by_label("Имя пользователя", exact=True).fill("pocket")
        page.get_by_label("Пароль", exact=True).fill("long enough pw")
        page.get_by_role("button", name="Создать учётную запись").click()
        expect(page.locator("#balance")).to_contain_text("Баланс: 10")
        message_box = page.locator("#message textarea")
        message_box.fill("[fault:numbered] Привет!")
        message_box.press("Enter")
        expect(page.locator("#balance")).to_contain_text("Баланс: 9")
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "screenshot-phone.png"))
        for element in ("#message textarea", "#send-button"):
            box = page.locator(element).bounding_box()
            assert box is not None and box["y"] + box["height"] <= PHONE["height"], (element, box)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width
        no_error_anywhere(page)
    finally:
        context.close()


def test_desktop_two_chats_in_the_sidebar_and_the_composer_on_screen(replace_app, page):
    page.set_viewport_size(DESKTOP)
    sign_up(page, replace_app.url, "reader")
    expect_balance(page, 10)
    for n, text in enumerate(("[fault:markdown] Plan a trip, with a table.", "[fault:numbered] And a short summary?")):
        message_box(page).fill(text)
        message_box(page).press("Enter")
        expect_balance(page, 9 - n)
    page.locator("#new-chat-button").click()
    message_box(page).fill("[fault:numbered] Name three rivers.")
    message_box(page).press("Enter")
    expect_balance(page, 7)
    links = page.locator("#chat-list .gc-chat-link")
    expect(links).to_have_count(2)  # the new chat has joined the list
    links.last.click()
    expect(user_bubbles(page)).to_have_count(2)
    box = page.locator("#message textarea").bounding_box()
    assert box is not None and box["y"] + box["height"] <= DESKTOP["height"]  # the composer is on screen
    chats = query(replace_app.data_dir, "SELECT COUNT(*) FROM conversations c JOIN users u ON u.id = c.user_id WHERE u.username = 'reader'")
    assert chats == [(2,)]


def font_size(locator) -> float:
    return float(locator.evaluate("(element) => parseFloat(getComputedStyle(element).fontSize)"))


def test_an_answers_figures_and_price_are_a_small_line_under_it_that_copy_leaves_out(replace_app, browser):
    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=replace_app.url.rstrip("/"))
    page = context.new_page()
    try:
        sign_up(page, replace_app.url, "copier")
        expect_balance(page, 10)
        start_a_long_answer(page)
        bot = page.get_by_test_id("bot").last
        text_size = font_size(user_bubbles(page).last.locator("p"))
        assert font_size(bot.locator("p").last) == text_size  # the streaming answer is not drawn as a footer
        page.keyboard.press("Escape")
        expect(bot).to_contain_text("Stopped.")

        message_box(page).fill("[fault:numbered] Copy this one.")
        message_box(page).press("Enter")
        expect_balance(page, 8)
        bot = page.get_by_test_id("bot").last
        expect(bot).to_contain_text(re.compile(r"Answer number \d+\."))
        expect(bot).to_contain_text("· 1 credit")  # the figures and price are on the page, under the answer
        answer = re.search(r"Answer number \d+\.", bot.inner_text()).group(0)
        assert font_size(bot.get_by_text(answer)) == text_size
        for viewport in (DESKTOP, PHONE):
            page.set_viewport_size(viewport)
            footer = bot.get_by_text(re.compile(r"· 1 credit"))
            assert font_size(footer) < 0.9 * text_size, viewport  # a secondary line, smaller than the answer
        page.set_viewport_size(DESKTOP)
        bot.hover()
        page.get_by_role("button", name="Copy message").last.click()
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == answer
    finally:
        context.close()


def open_chat_list(page: Page) -> None:
    """On a phone the chat list is a drawer, closed after each choice: open it (a desktop always shows it)."""
    sidebar = page.locator("#chats-sidebar")
    if "open" not in (sidebar.get_attribute("class") or "").split():
        sidebar.locator(".toggle-button").click()
    expect(page.locator("#new-chat-button")).to_be_in_viewport()


def chat_action(page: Page, name: str):
    """The chat's own icon on a message (Retry on the last answer, Edit on a message), when shown."""
    return page.locator("#transcript").get_by_role("button", name=name, exact=True)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_regenerate_and_edit_are_disabled_whenever_they_could_not_run(replace_app, page, viewport):
    page.set_viewport_size(viewport)
    sign_up(page, replace_app.url, f"actions{viewport['width']}")
    expect_balance(page, 10)
    regenerate, edit = page.locator("#regenerate-button"), page.locator("#edit-button")
    expect(regenerate).to_be_disabled()  # no answer yet
    expect(edit).to_be_disabled()

    start_a_long_answer(page)
    expect(regenerate).to_be_disabled()
    expect(edit).to_be_disabled()
    expect(chat_action(page, "Retry")).to_have_count(0)
    expect(chat_action(page, "Edit")).to_have_count(0)
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("bot").last).to_contain_text("Stopped.")
    expect(regenerate).to_be_enabled()  # an answer to replace
    expect(edit).to_be_enabled()
    expect(chat_action(page, "Retry")).to_have_count(1)

    message_box(page).fill("[fault:numbered] And a short one.")
    message_box(page).press("Enter")
    expect_balance(page, 8)
    expect(regenerate).to_be_enabled()
    expect(edit).to_be_enabled()
    expect(chat_action(page, "Edit")).to_have_count(1)  # on the last message only: the others cannot be replaced
    expect(chat_action(page, "Retry")).to_have_count(1)
    open_chat_list(page)
    page.locator("#new-chat-button").click()
    expect(user_bubbles(page)).to_have_count(0)
    expect(regenerate).to_be_disabled()
    expect(edit).to_be_disabled()
    open_chat_list(page)
    page.locator("#chat-list .gc-chat-link").first.click()
    expect(user_bubbles(page)).to_have_count(2)
    expect(regenerate).to_be_enabled()
    expect(edit).to_be_enabled()
    page.reload()
    expect(user_bubbles(page)).to_have_count(2)
    expect(regenerate).to_be_enabled()
    no_error_anywhere(page)


def test_export_a_chat_from_its_menu_and_all_chats_from_the_account_tab(replace_app, page, tmp_path):
    import json

    page.set_viewport_size(DESKTOP)
    sign_up(page, replace_app.url, "exporter")
    expect_balance(page, 10)
    for question in ("[fault:numbered] First exported chat.", "[fault:numbered] Second exported chat."):
        page.locator("#new-chat-button").click()
        message_box(page).fill(question)
        message_box(page).press("Enter")
        expect(page.get_by_test_id("bot").last).to_contain_text(re.compile(r"Answer number \d+\."))
    rows = page.locator("#chat-list .gc-chat")
    expect(rows).to_have_count(2)

    first = rows.filter(has_text="First exported chat")
    first.locator("summary").click()
    with page.expect_download() as download:
        first.get_by_role("button", name="Export (JSON)").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    one = json.loads(saved.read_text(encoding="utf-8"))
    assert one["format"] == "gemma-chat.chat/1"
    assert [turn["prompt"] for turn in one["turns"]] == ["[fault:numbered] First exported chat."]

    page.get_by_role("tab", name="Account").click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Export all chats (JSON)").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    everything = json.loads(saved.read_text(encoding="utf-8"))
    assert everything["format"] == "gemma-chat.chats/1" and saved.name.startswith("gemma-chat-chats-")
    assert [chat["turns"][0]["prompt"] for chat in everything["chats"]] == [
        "[fault:numbered] Second exported chat.", "[fault:numbered] First exported chat.",  # newest first
    ]
    # Each chat in the whole file is the very object its own export gives.
    without_time = lambda chat: {k: v for k, v in chat.items() if k != "exported_at"}  # noqa: E731
    assert without_time(everything["chats"][1]) == without_time(one)
    no_error_anywhere(page)


def version_arrow(page: Page, mark: str):
    """‹ or › under the last answer, while it is a link (at either end the arrow is plain text)."""
    return page.get_by_test_id("bot").last.locator('a[href^="#gc-version-"]', has_text=mark)


def test_a_regenerated_answer_pages_back_to_the_first_and_forward_and_a_reload_shows_the_latest(replace_app, page):
    page.set_viewport_size(DESKTOP)
    signed_up_with_one_answer(page, replace_app.url, "pager", "[fault:numbered] Say something.")
    first = shown_answer(page)
    answer = page.get_by_test_id("bot").last
    expect(answer.locator('a[href^="#gc-version-"]')).to_have_count(0)  # one answer: no arrows
    page.locator("#regenerate-button").click()
    expect_balance(page, 8)
    expect(answer).not_to_contain_text(first)
    second = shown_answer(page)
    expect(answer).to_contain_text("2/2")
    turns = query(replace_app.data_dir, "SELECT COUNT(*) FROM interactions")

    version_arrow(page, "‹").click()  # the mouse
    expect(answer).to_contain_text("1/2")
    expect(answer).to_contain_text(first)
    expect(answer).not_to_contain_text(second)
    expect(answer).to_contain_text("· 1 credit")  # its own figures and price
    expect(user_bubbles(page)).to_have_text(["[fault:numbered] Say something."])
    version_arrow(page, "›").click()
    expect(answer).to_contain_text("2/2")
    expect(answer).to_contain_text(second)

    version_arrow(page, "‹").focus()  # the keyboard: Enter on an arrow, and the focus stays on the arrows
    page.keyboard.press("Enter")
    expect(answer).to_contain_text("1/2")
    expect(page.locator(":focus")).to_have_text("›")
    page.keyboard.press("Enter")
    expect(answer).to_contain_text("2/2")
    expect_balance(page, 8)  # paging charged nothing and asked the model nothing
    assert query(replace_app.data_dir, "SELECT COUNT(*) FROM interactions") == turns

    page.set_viewport_size(PHONE)  # the page arrives at phone width: the chat list is a closed drawer
    page.reload()
    expect(answer).to_contain_text("2/2")
    expect(answer).to_contain_text(second)
    expect(page.locator("#chats-sidebar")).not_to_have_class(re.compile(r"\bopen\b"))
    version_arrow(page, "‹").click()  # a finger, at phone width
    expect(answer).to_contain_text("1/2")
    box = version_arrow(page, "›").bounding_box()
    assert box is not None and box["x"] + box["width"] <= PHONE["width"] and box["height"] >= 20, box
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "screenshot-versions-phone.png"))
    no_error_anywhere(page)


def shown_messages(page: Page) -> list[str]:
    """The transcript's messages, each answer without its footer (an imported one was charged elsewhere)."""
    shown = []
    for bubble in page.locator("[data-testid=user], [data-testid=bot]").all():
        found = re.search(r"Answer number \d+\.", bubble.inner_text())
        shown.append(found.group(0) if bubble.get_attribute("data-testid") == "bot" and found else bubble.inner_text().strip())
    return shown


def test_a_chat_exported_as_json_and_imported_opens_with_the_same_messages(replace_app, page, tmp_path):
    import json

    page.set_viewport_size(DESKTOP)
    sign_up(page, replace_app.url, "importer")
    expect_balance(page, 10)
    page.locator("#new-chat-button").click()
    for question in ("[fault:numbered] Going abroad.", "[fault:numbered] And back?"):
        message_box(page).fill(question)
        message_box(page).press("Enter")
        expect(page.get_by_test_id("bot").last).to_contain_text(re.compile(r"Answer number \d+\."))
    expect(page.get_by_test_id("bot")).to_have_count(2)
    messages = shown_messages(page)
    assert messages[0::2] == ["[fault:numbered] Going abroad.", "[fault:numbered] And back?"] and len(messages) == 4
    expect_balance(page, 8)
    rows = page.locator("#chat-list .gc-chat")
    rows.first.locator("summary").click()
    with page.expect_download() as download:
        rows.first.get_by_role("button", name="Export (JSON)").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)

    # Another account imports the file through the browser's own file chooser.
    log_out(page)
    sign_up(page, replace_app.url, "importer2")
    expect_balance(page, 10)
    expect(rows).to_have_count(0)
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Import chat").click()
    chooser.value.set_files(str(saved))

    expect(page.locator("#sidebar-notice")).to_contain_text("Imported “[fault:numbered] Going abroad.” (2 messages).")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_class(re.compile("gc-open"))
    expect(page.get_by_test_id("bot")).to_have_count(2)
    assert shown_messages(page) == messages
    expect(page.get_by_test_id("bot").first).to_contain_text("· imported")  # charged where it was answered
    expect(page.locator("#regenerate-button")).to_be_disabled()  # an imported answer is not replaced here
    expect(page.locator("#edit-button")).to_be_disabled()
    expect(chat_action(page, "Retry")).to_have_count(0)
    expect(chat_action(page, "Edit")).to_have_count(0)
    assert re.search(r"[?&]chat=\d+", page.url)
    expect_balance(page, 10)  # nothing charged for it

    # A file that is not an export is named beside the Account tab's button, and nothing is created.
    wrong = tmp_path / "notes.json"
    wrong.write_text(json.dumps({"format": "notes/1"}), encoding="utf-8")
    page.get_by_role("tab", name="Account").click()
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Import chats (JSON)").click()
    chooser.value.set_files(str(wrong))
    expect(page.locator("#import-message")).to_contain_text("This is not a gemma-chat export")
    expect(rows).to_have_count(1)
    no_error_anywhere(page)
