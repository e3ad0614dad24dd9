"""End to end in Chromium: sign up, chat with both tiers, history, top-up, admin, and safety."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import Page, expect

from conftest import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The README's screenshots are refreshed only when asked (GEMMA_CHAT_UPDATE_SCREENSHOTS=1), so a test
# run never rewrites tracked files; otherwise they land beside the failure screenshots.
SHOTS = ROOT / ("docs" if os.environ.get("GEMMA_CHAT_UPDATE_SCREENSHOTS") == "1" else "test-artifacts")


def sign_up(page: Page, url: str, username: str, password: str = "long enough pw") -> None:
    page.goto(url)
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Create account").click()


def log_in(page: Page, url: str, username: str, password: str = "long enough pw") -> None:
    page.goto(url)
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def log_out(page: Page) -> None:
    """Log out loads the page afresh on the sign-in form: wait for that page, not just the form."""
    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()


def choose_model(page: Page, tier_text: str) -> None:
    page.locator("#model input").click()
    page.get_by_role("option", name=re.compile(tier_text)).click()


def expect_balance(page: Page, credits: int) -> None:
    unit = "credit" if credits == 1 else "credits"
    # An answer's time on a loaded 2-core machine, not a speed check (bench/ measures speed).
    expect(page.locator("#balance")).to_have_text(re.compile(rf"^\s*Balance: {credits} {unit}\s*$"), timeout=90_000)


def send(page: Page, text: str) -> None:
    page.locator("#message textarea").fill(text)
    page.get_by_role("button", name="Send", exact=True).click()


def test_a_user_signs_up_chats_with_both_models_tops_up_and_the_admin_sees_it(app, page):
    sign_up(page, app.url, "alice")
    expect_balance(page, 10)
    expect(page.get_by_label("Password", exact=True)).not_to_be_visible()

    send(page, "What is the capital of France?")
    expect_balance(page, 9)
    expect(page.get_by_text("— Gemma 3 270M (bundled demo) for mini · 1 credit")).to_be_visible()

    choose_model(page, "for pro")
    send(page, "Name a large ocean.")
    expect_balance(page, 6)
    expect(page.get_by_text("— Gemma 3 270M (bundled demo) for pro · 3 credits")).to_be_visible()
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "screenshot-chat.png"))

    page.get_by_role("tab", name="History").click()
    rows = page.get_by_role("row").filter(has_text="bundled demo")
    expect(rows).to_have_count(2)
    expect(page.get_by_text("Page 1 of 1")).to_be_visible()
    # Newest first: the pro answer, 3 credits, then the mini one, 1 credit.
    expect(rows.nth(0)).to_contain_text(re.compile(r"for pro\s+3\s+ok\s+Name a large ocean\."))
    expect(rows.nth(1)).to_contain_text(re.compile(r"for mini\s+1\s+ok\s+What is the capital of France\?"))

    page.get_by_role("tab", name="Top up").click()
    page.get_by_label("Credits to add").fill("5")
    page.get_by_role("button", name="Top up", exact=True).click()
    expect_balance(page, 11)
    expect(page.get_by_text("Added 5 credits")).to_be_visible()

    log_out(page)

    sign_up(page, app.url, "bob")
    expect_balance(page, 10)
    expect(page.get_by_role("tab", name="Admin")).to_have_count(0)
    page.get_by_role("tab", name="History").click()
    # History's own empty line, not the sidebar's "No chats yet" beside it.
    expect(page.get_by_text("Page 1 of 1 — no chats yet")).to_be_visible()
    log_out(page)

    log_in(page, app.url, "alice")
    page.get_by_role("tab", name="Admin").click()
    # Requests per model: one each; credits per user: alice spent 4 over 2 requests.
    expect(page.locator("#model-table").get_by_role("row").filter(has_text="bundled demo")).to_have_count(2)
    alice_row = page.get_by_role("row").filter(has_text=re.compile(r"^\s*alice\b"))
    expect(alice_row).to_contain_text(re.compile(r"alice\s+4\s+5\s+0\s+11\s+2"))
    expect(page.get_by_role("row").filter(has_text=re.compile(r"^\s*bob\b"))).to_contain_text(re.compile(r"bob\s+0\s+0\s+0\s+10\s+0"))
    page.wait_for_timeout(1000)  # let the charts draw
    page.screenshot(path=str(SHOTS / "screenshot-admin.png"), full_page=True)


def test_not_enough_credits_is_refused_and_charges_nothing(app, page):
    sign_up(page, app.url, "carol")
    expect_balance(page, 10)
    choose_model(page, "for pro")
    for expected in (7, 4, 1):
        send(page, "Say hi.")
        expect_balance(page, expected)
    send(page, "Say hi again.")
    expect(page.get_by_text("Not enough credits")).to_be_visible()
    expect_balance(page, 1)


def test_markup_in_a_prompt_is_shown_as_text_and_never_runs(app, page):
    sign_up(page, app.url, "dave")
    expect_balance(page, 10)
    hostile = "<img src=x onerror=alert(1)> <script>alert(2)</script>"
    send(page, hostile)
    expect_balance(page, 9)
    expect(page.get_by_test_id("user").get_by_text(hostile)).to_be_visible()  # the answer may echo it too
    assert page.locator(".message img[src='x']").count() == 0
    page.get_by_role("tab", name="History").click()
    expect(page.get_by_role("row").filter(has_text="bundled demo")).to_contain_text("<img src=x onerror=alert(1)>")
    assert page.dialogs == []


def test_the_password_never_reaches_browser_storage(app, page):
    sign_up(page, app.url, "erin", "secret password 123")
    expect_balance(page, 10)
    stored = page.evaluate("() => JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})")
    assert "secret password 123" not in stored
    log_out(page)
    expect(page.get_by_label("Password", exact=True)).to_have_value("")  # cleared after the attempt


def test_a_wrong_password_is_shown_inline_and_cleared(app, page):
    sign_up(page, app.url, "frank")
    expect_balance(page, 10)
    log_out(page)
    log_in(page, app.url, "frank", "not the password")
    expect(page.get_by_text("Wrong username or password.")).to_be_visible()
    expect(page.get_by_label("Password", exact=True)).to_have_value("")
    page.get_by_role("button", name="Create account").click()  # same name again
    expect(page.get_by_text("Enter a password.")).to_be_visible()


def test_the_sign_in_form_follows_a_russian_browser(app, browser):
    context = browser.new_context(locale="ru-RU")
    page = context.new_page()
    try:
        page.goto(app.url)
        expect(page.get_by_label("Имя пользователя", exact=True)).to_be_visible()
        expect(page.get_by_role("button", name="Войти")).to_be_visible()
        expect(page.get_by_role("button", name="Создать учётную запись")).to_be_visible()
    finally:
        context.close()


def test_a_reload_keeps_you_signed_in_and_log_out_ends_it(app, page):
    sign_up(page, app.url, "gina")
    expect_balance(page, 10)
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["gemma_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/"
    assert "gemma_session" not in page.evaluate("() => document.cookie")  # scripts cannot read it
    page.reload()
    expect_balance(page, 10)  # still signed in after a reload...
    page.goto(app.url)
    expect_balance(page, 10)  # ...and in a new page load
    page.get_by_role("button", name="Log out", exact=True).click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()  # the session is over
    expect(page.locator("#balance")).to_have_count(0)
    # The old cookie, put back by hand, signs no one in: the server ended the session.
    page.context.add_cookies([{k: session[k] for k in ("name", "value", "domain", "path", "httpOnly", "sameSite")}])
    page.reload()
    expect(page.get_by_text("Your session has expired; please log in again.")).to_be_visible()
    expect(page.locator("#balance")).to_have_count(0)


def test_an_api_key_made_on_the_account_tab_answers_through_v1_and_revoke_stops_it(app, page):
    openai = pytest.importorskip("openai")
    sign_up(page, app.url, "scripter")
    expect_balance(page, 10)
    page.get_by_role("tab", name="Account").click()
    page.get_by_label("Key name").fill("my editor")
    page.get_by_role("button", name="Create API key").click()
    expect(page.get_by_text("Your new API key (shown only now)")).to_be_visible()
    shown = page.locator("#new-api-key textarea, #new-api-key input").first
    expect(shown).to_have_value(re.compile(r"^gck_"))
    key = shown.input_value()
    expect(page.get_by_role("row").filter(has_text="my editor")).to_have_count(1)

    client = openai.OpenAI(base_url=app.url + "v1", api_key=key, max_retries=0)
    answer = client.chat.completions.create(model="mini", messages=[{"role": "user", "content": "Say hello."}])
    assert answer.choices[0].message.content
    page.get_by_role("tab", name="History").click()
    expect(page.get_by_role("row").filter(has_text="(API)")).to_have_count(1)

    page.get_by_role("tab", name="Account").click()
    expect(page.get_by_role("row").filter(has_text="my editor")).not_to_contain_text("never")  # last used
    page.get_by_label("Key to revoke").click()
    page.get_by_role("option", name=re.compile("my editor")).click()
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("stops working at once")).to_be_visible()
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
