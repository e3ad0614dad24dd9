"""The Admin tab's Users section in Chromium: the table, a row chosen by a click, Grant credits with a
note, and Disable, which signs the account out and keeps it out."""

from __future__ import annotations

import re
import sqlite3

import httpx
import pytest
from playwright.sync_api import expect

from e2e.test_browser import expect_balance, sign_up

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def register(url: str, username: str, password: str = "long enough pw") -> httpx.Response:
    return httpx.post(url + "auth/register", json={"username": username, "password": password}, timeout=60)


def test_an_admin_grants_credits_and_disables_an_account_from_the_users_table(app, page):
    sign_up(page, app.url, "root")  # the first account: the administrator
    expect_balance(page, 10)
    assert register(app.url, "member").status_code == 200

    page.get_by_role("tab", name="Admin").click()
    # Reports, the first section: headers a reader understands, not the report's column names.
    expect(page.locator("#model-table")).to_contain_text("Answered")
    page.get_by_role("tab", name="Model performance").click()
    expect(page.locator("#performance-table")).to_contain_text("First token, median (ms)")
    expect(page.locator("#performance-table")).not_to_contain_text("ttft")
    page.get_by_role("tab", name="Users").click()
    table = page.locator("#users-table")
    member_row = table.get_by_role("row").filter(has_text="member")
    expect(member_row).to_contain_text(re.compile(r"member\s+10\s+0\s+user\s+active"))
    expect(table.get_by_role("row").filter(has_text="root")).to_contain_text(re.compile(r"root\s+10\s+0\s+admin\s+active"))

    # An action with no account chosen says so beside the actions: no popup, no red badge.
    page.locator("#disable-button").click()
    expect(page.locator("#users-message")).to_contain_text("Choose an account first")
    expect(page.locator("#users-confirm:visible")).to_have_count(0)
    expect(page.locator(".toast-body")).to_have_count(0)
    member_row.get_by_role("gridcell").first.click()
    expect(page.get_by_label("Account", exact=True)).to_have_value("member")
    page.get_by_label("Credits to grant").fill("25")
    page.get_by_label("Note (kept in the ledger)").fill("welcome gift")
    page.get_by_role("button", name="Grant credits").click()
    expect(page.locator("#users-message")).to_have_text("Granted +25 credits to member; balance now 35.")
    expect(member_row).to_contain_text(re.compile(r"member\s+35\s+0\s+user\s+active"))
    actions = page.locator("#admin-actions-table").get_by_role("row")
    # Readable action names, not the audit table's codes (grant, create_user).
    expect(actions.filter(has_text="credits granted")).to_contain_text(
        re.compile(r"root\s+credits granted\s+member\s+\+25 credits: welcome gift")
    )

    # Disable asks first; Cancel changes nothing, the confirming button disables. (Gradio may keep a
    # hidden copy of a group it showed and hid again: "none on screen" is what a user sees.)
    page.locator("#disable-button").click()
    expect(page.locator("#confirm-question")).to_have_text("Disable: member?")
    page.locator("#confirm-cancel").click()
    expect(page.locator("#users-confirm:visible")).to_have_count(0)
    expect(member_row).to_contain_text(re.compile(r"member\s+35\s+0\s+user\s+active"))
    page.locator("#disable-button").click()
    expect(page.locator("#enable-confirm")).to_be_hidden()
    page.locator("#disable-confirm").click()
    expect(page.locator("#users-message")).to_contain_text("member disabled")
    expect(page.locator("#users-confirm:visible")).to_have_count(0)

    expect(member_row).to_contain_text(re.compile(r"member\s+35\s+0\s+user\s+disabled"))
    expect(actions.filter(has_text="disabled")).to_contain_text(re.compile(r"root\s+disabled\s+member"))

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

    # Create user is its own dialog: it opens, creates, and closes; the account box is left alone.
    expect(page.locator("#create-user-dialog:visible")).to_have_count(0)
    page.locator("#create-user-button").click()
    page.get_by_label("Username of the new account").fill("newcomer")
    page.get_by_label("Its password").fill("long enough pw")
    page.locator("#create-user-confirm").click()
    expect(page.locator("#users-message")).to_have_text("Created newcomer with 10 credits.")
    expect(page.locator("#create-user-dialog:visible")).to_have_count(0)
    expect(table.get_by_role("row").filter(has_text="newcomer")).to_contain_text(re.compile(r"newcomer\s+10\s+0\s+user\s+active"))
    expect(page.get_by_label("Account", exact=True)).to_have_value("member")
