"""The Top up tab's statement in Chromium (issue 11, point 8): every entry paged, totals by kind, a CSV.

Pages of three entries (GEMMA_CHAT_HISTORY_PAGE_SIZE), so a few top-ups make a second page.
"""

from __future__ import annotations

import csv
import re

import pytest
from playwright.sync_api import Page, expect

from conftest import MODEL_CACHE
from e2e.conftest import RunningApp
from e2e.test_browser import expect_balance, log_out, sign_up

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def statement_app(tmp_path_factory):
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    directory = tmp_path_factory.mktemp("statement-app")
    running = RunningApp(directory / "data", directory / "app.log", GEMMA_CHAT_HISTORY_PAGE_SIZE="3")
    yield running
    running.stop()


def top_up(page: Page, credits: int, balance: int) -> None:
    page.get_by_label("Credits to add").fill(str(credits))
    page.get_by_role("button", name="Top up", exact=True).click()
    expect_balance(page, balance)
    expect(page.locator("#topup-message")).to_contain_text(f"Added {credits} credit")


def statement_rows(page: Page):
    return page.locator("#statement-table").get_by_role("row").filter(has_text=re.compile(r"\d{4}-\d\d-\d\d"))


def test_a_user_tops_up_pages_the_statement_sees_totals_and_downloads_only_their_csv(statement_app, page, tmp_path):
    sign_up(page, statement_app.url, "neighbour")  # someone else's entries, which must stay out of it
    expect_balance(page, 10)
    page.get_by_role("tab", name="Top up").click()
    top_up(page, 99, 109)
    log_out(page)

    sign_up(page, statement_app.url, "payer")
    expect_balance(page, 10)
    page.get_by_role("tab", name="Top up").click()
    label = page.locator("#statement-label")
    expect(label).to_have_text(re.compile(r"Page 1 of 1 — 1 entry"))
    for credits, balance in ((5, 15), (7, 22), (2, 24)):
        top_up(page, credits, balance)

    expect(label).to_have_text(re.compile(r"Page 1 of 2 — 4 entries"))
    totals = page.locator("#statement-totals")
    expect(totals.get_by_role("row").filter(has_text="Top-ups")).to_have_text(re.compile(r"Top-ups\s+3\s+\+14"))
    expect(totals.get_by_role("row").filter(has_text="Sign-up")).to_have_text(re.compile(r"Sign-up\s+1\s+\+10"))
    expect(totals.get_by_role("row").filter(has_text="Balance")).to_have_text(re.compile(r"Balance\s+4\s+24"))
    rows = statement_rows(page)
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text(re.compile(r"topup\s+\+2\s+24"))  # newest first

    page.locator("#statement-next").click()
    expect(label).to_have_text(re.compile(r"Page 2 of 2"))
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_contain_text(re.compile(r"signup\s+\+10\s+10"))
    page.locator("#statement-previous").click()
    expect(label).to_have_text(re.compile(r"Page 1 of 2"))
    expect(rows).to_have_count(3)

    with page.expect_download() as download:
        page.get_by_role("link", name="Download statement (CSV)").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.suffix == ".csv" and "gemma-chat-statement-" in saved.name
    with saved.open(encoding="utf-8") as file:
        entries = list(csv.DictReader(file))
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in entries] == [
        ("signup", "10", "10"), ("topup", "5", "15"), ("topup", "7", "22"), ("topup", "2", "24"),
    ]
