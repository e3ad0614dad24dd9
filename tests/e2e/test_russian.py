"""A browser set to Russian: Gradio translates the labels, the server the messages it composes."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_russian_browser_sees_russian_labels_balance_and_top_up_messages(app, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ru-RU")  # navigator and Accept-Language
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(app.url)
        page.get_by_label("Имя пользователя", exact=True).fill("ivan")
        page.get_by_label("Пароль", exact=True).fill("long enough pw")
        page.get_by_role("button", name="Создать учётную запись").click()
        expect(page.locator("#balance")).to_have_text(re.compile(r"^\s*Баланс: 10 кредитов\s*$"))
        expect(page.get_by_role("button", name="Ответить заново")).to_be_visible()

        page.get_by_role("tab", name="Пополнить").click()
        page.get_by_label("Сколько кредитов добавить").fill("2")
        page.get_by_role("button", name="Пополнить", exact=True).click()
        expect(page.locator("#topup-message")).to_have_text(re.compile(r"Добавлено 2 кредита\. Новый баланс: 12 кредитов\."))
        expect(page.locator("#balance")).to_have_text(re.compile(r"^\s*Баланс: 12 кредитов\s*$"))
        expect(page.locator("#statement-csv")).to_have_text("Скачать выписку (CSV)")
        expect(page.locator("#statement-label")).to_have_text(re.compile(r"Страница 1 из 1 — 2 записи"))
    finally:
        context.close()
