"""The Admin tab's Users section in Chromium, desktop (1280×800) and phone (390×844): each row's ⋯ menu
offers what applies to that account, from the mouse and from the keyboard; Grant credits asks for an
amount in a small dialog; Disable asks first, signs the account out and keeps it out, and the row then
offers Enable; a name with HTML in it is shown as typed; Create user is a dialog of its own."""

from __future__ import annotations

import re
import sqlite3

import httpx
import pytest
from playwright.sync_api import Page, expect

from e2e.test_browser import SHOTS, expect_balance, sign_up

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
HTML_NAME = "<b>x</b>"


def register(url: str, username: str, password: str = "long enough pw") -> httpx.Response:
    return httpx.post(url + "auth/register", json={"username": username, "password": password}, timeout=60)


def row_of(page: Page, username: str):
    """The Users table's row whose first cell is `username` (exactly: "member" is not "member2")."""
    first_cell = page.locator("td:first-child", has_text=re.compile(rf"^{re.escape(username)}$"))
    return page.locator("#users-table tbody tr").filter(has=first_cell)


def menu_of(page: Page, username: str):
    """The row's ⋯ menu, opened; its buttons are what it offers."""
    row = row_of(page, username)
    row.locator("summary").click()
    menu = row.locator("details.gc-menu > div")
    expect(menu).to_be_visible()
    return menu


def offered(menu) -> list[str]:
    return [label.strip() for label in menu.get_by_role("button").all_inner_texts()]


def dialog(page: Page):
    """A row action's dialog, if open."""
    return page.locator("#account-dialog:visible")


def open_tab(page: Page, tabs: str, name: str) -> None:
    """A tab of the Tabs `#tabs`, from its row or, past the phone's width, from under the row's ⋯."""
    row = page.locator(f"#{tabs} [role=tablist]").first  # the first: Admin's own sections are Tabs inside #tabs
    expect(row).to_be_visible()
    tab = row.get_by_role("tab", name=name, exact=True)
    if tab.is_visible():
        tab.click()
        return
    page.locator(f"#{tabs} .overflow-menu > button").first.click()
    page.locator(f"#{tabs} .overflow-dropdown").first.get_by_role("button", name=name, exact=True).click()


def no_error_anywhere(page: Page) -> None:
    expect(page.locator(".toast-body")).to_have_count(0)
    expect(page.get_by_text(re.compile(r"^\s*Error\s*$"))).to_have_count(0)


def test_an_admin_acts_on_accounts_through_each_row_s_menu(app, page):
    page.set_viewport_size(DESKTOP)
    sign_up(page, app.url, "root")  # the first account: the administrator
    expect_balance(page, 10)
    for name in ("member", "oddname"):
        assert register(app.url, name).status_code == 200
    with sqlite3.connect(app.data_dir / "gemma_chat.db") as connection:  # a name made before names were checked
        connection.execute("UPDATE users SET username = ? WHERE username = 'oddname'", (HTML_NAME,))

    page.get_by_role("tab", name="Admin").click()
    # Reports, the first section: headers a reader understands, not the report's column names.
    expect(page.locator("#model-table")).to_contain_text("Answered")
    page.get_by_role("tab", name="Model performance").click()
    expect(page.locator("#performance-table")).to_contain_text("First token, median (ms)")
    expect(page.locator("#performance-table")).not_to_contain_text("ttft")
    page.get_by_role("tab", name="Users").click()
    member_row = row_of(page, "member")
    expect(member_row).to_contain_text(re.compile(r"member\s+10\s+0\s+user\s+active"))
    expect(row_of(page, "root")).to_contain_text(re.compile(r"root\s+10\s+0\s+admin\s+active"))
    # Nothing acts at a click on the row itself, and no buttons under the table act on a chosen row.
    expect(page.get_by_role("button", name="Disable", exact=True)).to_have_count(0)

    # The menu from the keyboard: Tab to its ⋯, Enter opens it, Tab walks its actions, Esc closes it.
    member_row.locator("summary").focus()
    page.keyboard.press("Enter")
    menu = member_row.locator("details.gc-menu > div")
    expect(menu).to_be_visible()
    assert offered(menu) == ["Grant credits…", "Set password…", "Disable…", "Make administrator…"]  # no Enable, no Unlock
    page.keyboard.press("Tab")
    expect(menu.get_by_role("button", name="Grant credits…")).to_be_focused()
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(member_row.locator("summary")).to_be_focused()

    # Grant credits: a dialog naming the account, its amount and note; Enter-free, the button grants.
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(dialog(page).locator("#account-question")).to_have_text(
        "Grant credits to member (balance 10); a negative number corrects."
    )
    expect(page.get_by_label("Credits to grant (negative to correct)")).to_be_focused()  # the keyboard goes on in the dialog
    page.get_by_label("Credits to grant (negative to correct)").fill("25")
    page.get_by_label("Note (kept in the ledger)").fill("welcome gift")
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "screenshot-admin-grant.png"))
    dialog(page).get_by_role("button", name="Grant credits").click()
    expect(page.locator("#users-message")).to_have_text("Granted +25 credits to member; balance now 35.")
    expect(dialog(page)).to_have_count(0)
    expect(member_row).to_contain_text(re.compile(r"member\s+35\s+0\s+user\s+active"))
    actions = page.locator("#admin-actions-table").get_by_role("row")
    # Readable action names, not the audit table's codes (grant, create_user).
    expect(actions.filter(has_text="credits granted")).to_contain_text(
        re.compile(r"root\s+credits granted\s+member\s+\+25 credits: welcome gift")
    )

    # Disable asks first; Cancel changes nothing, the dialog's button disables.
    menu_of(page, "member").get_by_role("button", name="Disable…").click()
    expect(dialog(page).locator("#account-question")).to_have_text(
        "Disable member? They are signed out everywhere and their API keys stop working."
    )
    dialog(page).get_by_role("button", name="Cancel").click()
    expect(dialog(page)).to_have_count(0)
    expect(member_row).to_contain_text(re.compile(r"member\s+35\s+0\s+user\s+active"))
    menu_of(page, "member").get_by_role("button", name="Disable…").click()
    dialog(page).get_by_role("button", name="Disable", exact=True).click()
    expect(page.locator("#users-message")).to_contain_text("member disabled")
    expect(dialog(page)).to_have_count(0)
    expect(member_row).to_contain_text(re.compile(r"member\s+35\s+0\s+user\s+disabled"))
    expect(actions.filter(has_text="disabled")).to_contain_text(re.compile(r"root\s+disabled\s+member"))
    assert offered(menu_of(page, "member")) == ["Grant credits…", "Set password…", "Enable…", "Make administrator…"]
    page.screenshot(path=str(SHOTS / "screenshot-admin-users.png"))
    page.keyboard.press("Escape")

    # The member's session (from registering) ended, and a new sign-in is refused.
    refused = httpx.post(app.url + "auth/login", json={"username": "member", "password": "long enough pw"}, timeout=60)
    assert refused.status_code == 400 and "disabled" in refused.json()["message"]
    with sqlite3.connect(app.data_dir / "gemma_chat.db") as connection:
        rows = connection.execute(
            "SELECT a.actor_name, a.action, u.username, a.detail FROM admin_actions a JOIN users u ON u.id = a.target_id ORDER BY a.id"
        ).fetchall()
        live = connection.execute(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = 'member' AND s.revoked_at IS NULL"
        ).fetchone()[0]
        grant = connection.execute("SELECT amount, actor_id, note FROM ledger_entries WHERE kind = 'grant'").fetchall()
    assert rows == [("root", "grant", "member", "+25 credits: welcome gift"), ("root", "disable", "member", "")]
    assert live == 0 and grant == [(25, 1, "welcome gift")]

    # A name with HTML in it: text in the table, in its menu's name and in the question, never markup.
    odd_row = row_of(page, HTML_NAME)
    expect(odd_row.get_by_role("cell").first).to_have_text(HTML_NAME)
    expect(odd_row.locator("summary")).to_have_attribute("aria-label", f"Actions for {HTML_NAME}")
    menu_of(page, HTML_NAME).get_by_role("button", name="Disable…").click()
    expect(dialog(page).locator("#account-question")).to_have_text(
        f"Disable {HTML_NAME}? They are signed out everywhere and their API keys stop working."
    )
    assert page.locator("#users-table b, #account-question b").count() == 0
    page.keyboard.press("Escape")  # Esc is the dialog's Cancel
    expect(dialog(page)).to_have_count(0)

    # Create user sits above the table, a dialog of its own: it opens, creates, and closes.
    expect(page.locator("#create-user-dialog:visible")).to_have_count(0)
    page.locator("#create-user-button").click()
    expect(page.get_by_label("Username of the new account")).to_be_focused()
    page.get_by_label("Its password").fill("short")
    page.locator("#create-user-confirm").click()  # refused: said in the dialog, which stays for a retry
    expect(page.locator("#create-user-message")).to_have_text("⚠ Enter a username.")
    page.get_by_label("Username of the new account").fill("newcomer")
    page.get_by_label("Its password").fill("long enough pw")
    page.locator("#create-user-confirm").click()
    expect(page.locator("#users-message")).to_have_text("Created newcomer with 10 credits.")
    expect(page.locator("#create-user-dialog:visible")).to_have_count(0)
    expect(row_of(page, "newcomer")).to_contain_text(re.compile(r"newcomer\s+10\s+0\s+user\s+active"))
    no_error_anywhere(page)

    # On a phone (the page opened there: the chat list a closed drawer) each row is a card with its ⋯ at
    # the top; the menu and the dialog fit the screen.
    page.set_viewport_size(PHONE)
    page.reload()
    open_tab(page, "tabs", "Admin")
    open_tab(page, "admin-sections", "Users")
    menu = menu_of(page, "member")
    box = menu.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    menu.get_by_role("button", name="Enable…").click()
    box = dialog(page).bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    expect(dialog(page).locator("#account-question")).to_have_text("Enable member? They can sign in again.")
    page.screenshot(path=str(SHOTS / "screenshot-admin-users-phone.png"))
    dialog(page).get_by_role("button", name="Enable", exact=True).click()
    expect(page.locator("#users-message")).to_have_text("member enabled: now a user, active.")
    expect(member_row).to_contain_text(re.compile(r"member\s+35\s+0\s+user\s+active"))
    menu = menu_of(page, "member")
    assert offered(menu) == ["Grant credits…", "Set password…", "Disable…", "Make administrator…"]
    menu.get_by_role("button", name="Grant credits…").click()
    page.get_by_label("Credits to grant (negative to correct)").fill("-5")
    dialog(page).get_by_role("button", name="Grant credits").click()
    expect(page.locator("#users-message")).to_have_text("Granted -5 credits to member; balance now 30.")
    expect(member_row).to_contain_text(re.compile(r"member\s+30\s+0\s+user\s+active"))
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width  # no sideways scrolling: the table became cards
    no_error_anywhere(page)
