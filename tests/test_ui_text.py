"""The UI's words (ui/text.py): both languages have every key, every message the UI can receive from
the services has a Russian translation, and a browser that asks for Russian gets Russian messages
while English stays exactly as it was."""

from __future__ import annotations

import ast
import string

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from conftest import ROOT, browser_request, shown_after, signed_in_request
from gemma_chat.accounts import admin
from gemma_chat.ui import ChatApp
from gemma_chat.ui.text import (
    MESSAGES,
    RUSSIAN_BY_ENGLISH,
    TRANSLATIONS,
    language_of,
    plural_form,
    template_fields,
    text,
    translated,
)

RUSSIAN = "ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7"  # what Chromium sends with its locale set to ru-RU
ENGLISH = "en-US,en;q=0.9"

# The labels of the first version: tests and the label contract depend on them.
FIRST_VERSION_LABELS = {
    "username": "Username", "password": "Password", "log_in": "Log in", "create_account": "Create account",
    "log_out": "Log out", "chat": "Chat", "history": "History", "top_up": "Top up", "admin": "Admin", "model": "Model",
    "message": "Message", "send": "Send", "stop": "Stop", "new_chat": "New chat", "previous": "Previous", "next": "Next",
    "credits_to_add": "Credits to add",
}


def test_the_first_version_s_english_labels_are_unchanged():
    assert {key: TRANSLATIONS["en"][key] for key in FIRST_VERSION_LABELS} == FIRST_VERSION_LABELS
    assert text("en", "balance", n=12) == "**Balance: 12 credits**" and text("en", "balance", n=1) == "**Balance: 1 credit**"


def plural_specs(template: str) -> list[str]:
    return [spec for _, field, spec, _ in string.Formatter().parse(template) if field and spec and "|" in spec]


@pytest.mark.parametrize("table", [TRANSLATIONS, MESSAGES], ids=["labels", "messages"])
def test_every_key_is_in_english_and_russian_with_the_same_placeholders(table):
    assert sorted(table["en"]) == sorted(table["ru"])
    for key, english in table["en"].items():
        russian = table["ru"][key]
        assert template_fields(english) == template_fields(russian), key
        assert all(len(spec.split("|")) == 2 for spec in plural_specs(english)), key  # English: one, other
        assert all(len(spec.split("|")) == 3 for spec in plural_specs(russian)), key  # Russian: one, few, many
        text("en", key, **dict.fromkeys(template_fields(english), 2))  # renders
        text("ru", key, **dict.fromkeys(template_fields(russian), 2))


def test_every_catalogue_entry_keeps_its_placeholders_and_is_translated():
    for english, russian in RUSSIAN_BY_ENGLISH.items():
        assert template_fields(english) == template_fields(russian), english
        assert all(len(spec.split("|")) == 2 for spec in plural_specs(english)), english
        assert all(len(spec.split("|")) == 3 for spec in plural_specs(russian)), english
        assert russian != english


@pytest.mark.parametrize(
    "n, word", [(1, "кредит"), (2, "кредита"), (4, "кредита"), (5, "кредитов"), (11, "кредитов"), (12, "кредитов"),
                (21, "кредит"), (22, "кредита"), (111, "кредитов"), (0, "кредитов"), ("1,001", "кредит"), (-3, "кредита")],
)
def test_russian_plurals(n, word):
    assert plural_form(n, ["кредит", "кредита", "кредитов"]) == word


def test_english_plurals_are_as_before():
    assert [plural_form(n, ["credit", "credits"]) for n in (1, 0, 2, -1, "1")] == ["credit", "credits", "credits", "credits", "credit"]


@pytest.mark.parametrize(
    "header, language",
    [
        (RUSSIAN, "ru"), ("ru", "ru"), ("RU-ru", "ru"), (ENGLISH, "en"), ("en-US,en;q=0.9,ru;q=0.8", "en"),
        ("de-DE,de;q=0.9,ru;q=0.5", "ru"), ("de, fr", "en"), ("ru;q=0, en", "en"), ("en;q=0.1, ru;q=0.2", "ru"),
        ("*", "en"), ("", "en"), (None, "en"), ("ru;q=abc", "en"), (";;,,ru-", "en"), ("x" * 10_000 + ",ru", "en"),
    ],
)
def test_the_language_comes_from_accept_language(header, language):
    assert language_of(browser_request(None, accept_language=header)) == language
    assert language_of(None) == "en"


# --- every message that can reach the UI is in the catalogue ------------------------------------

# Where the UI's messages come from: the services it calls, and its own modules (every one of ui/).
MESSAGE_SOURCES = [
    "accounts/admin.py", "accounts/auth.py", "chats/turn.py", "chats/conversations.py", "chats/versions.py", "inference/engine.py", "chats/history.py", "accounts/keys.py", "billing/ledger.py",
    "ops/reports.py", "web/app.py", "backends/base.py", "backends/local.py", "backends/llama_runner.py", "backends/openai.py",
    "backends/worker.py",
] + sorted(str(path.relative_to(ROOT / "gemma_chat")) for path in (ROOT / "gemma_chat" / "ui").rglob("*.py"))
NOT_GEMMA_CHAT_ERRORS = {"ValueError", "RuntimeError", "OSError", "TypeError", "KeyError"}
# A plausible value for a placeholder, by its expression; any other is a number.
SAMPLES = {"what": "Credits", "what.lower()": "credits", "verb": "demote"}


def sample(node) -> str | None:
    """What an f-string or a literal renders to, with a plausible value in each placeholder."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = ""
        for value in node.values:
            if isinstance(value, ast.Constant):
                out += value.value
                continue
            expression = value.value
            if isinstance(expression, ast.IfExp) and isinstance(expression.body, ast.Constant):
                out += expression.body.value  # "minute{'s' if minutes != 1 else ''}" with the number 2
            else:
                out += SAMPLES.get(ast.unparse(expression), "2")
        return out
    return None


def messages_in(path) -> list[tuple[int, str]]:
    """The messages of the exceptions raised in `path`, and of chat turns (TurnUpdate(message=…))."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        call = node.exc if isinstance(node, ast.Raise) else node
        if not isinstance(call, ast.Call):
            continue
        name = ast.unparse(call.func)
        if isinstance(node, ast.Raise) and name.endswith("Error") and name not in NOT_GEMMA_CHAT_ERRORS and call.args:
            message = sample(call.args[0])
        else:
            message = next((sample(k.value) for k in call.keywords if k.arg == "message"), None)
        if message and message.strip():
            found.append((node.lineno, message))
    return found


def test_every_message_the_ui_can_receive_has_a_russian_translation():
    from gemma_chat.accounts import auth
    from gemma_chat.chats import turn
    from gemma_chat.backends import local

    untranslated = []
    for name in MESSAGE_SOURCES:
        for line, message in messages_in(ROOT / "gemma_chat" / name):
            if translated("ru", message) == message:
                untranslated.append(f"gemma_chat/{name}:{line}: {message}")
    for message in (auth.WRONG_CREDENTIALS, turn.DATABASE_BUSY_MESSAGE, local.CRASH_MESSAGE):
        if translated("ru", message) == message:
            untranslated.append(message)
    assert untranslated == [], "add these to ui/text.py's RUSSIAN_BY_ENGLISH:\n" + "\n".join(untranslated)
    assert len(messages_in(ROOT / "gemma_chat" / "accounts/auth.py")) > 10  # the scan does find them


def test_a_message_inside_a_message_is_translated_and_an_unknown_one_stays_english():
    failed = "The model stopped unexpectedly. Nothing was charged. (error 4f2a)"
    assert translated("ru", failed) == "Модель неожиданно остановилась. Кредиты не списаны. (ошибка 4f2a)"
    assert translated("ru", "Something unheard of.") == "Something unheard of."
    assert translated("en", failed) is failed
    # "The {label} model is not available" is more specific than "{label} is not available": it wins.
    assert translated("ru", "The mini model is not available: no file") == "Модель mini недоступна: no file"


# --- a Russian browser gets Russian messages; English ones are as they always were --------------


@pytest.fixture
def app(chat_settings, demo_engine):
    return ChatApp(chat_settings, demo_engine)


def test_the_balance_line_and_the_refusal_for_too_few_credits_follow_the_browser(app, chat_settings):
    russian = signed_in_request(chat_settings, "alice", accept_language=RUSSIAN)
    english = signed_in_request(chat_settings, "bob", accept_language=ENGLISH)
    shown = app.restore(russian)
    assert (shown["who"], shown["balance"]) == ("Вы вошли как **alice** (администратор)", "**Баланс: 10 кредитов**")
    shown = app.restore(english)
    assert (shown["who"], shown["balance"]) == ("Signed in as **bob**", "**Balance: 10 credits**")
    for name in ("alice", "bob"):
        admin.grant_credits(None, name, -9)  # 1 credit left; pro costs 3
    refusal, marked = {}, {}
    for name, request in (("ru", russian), ("en", english)):
        shown = shown_after(app.send(request, "pro", "Hello?", [], []))
        refusal[name], marked[name] = shown["chat_notice"], shown["chatbot"][-1]["content"]
    label = "Gemma 3 270M (bundled demo) for pro"
    assert refusal["en"] == (
        f"⚠ Not enough credits: {label} costs 3 credits per answer and you have 1. Add credits on the Top up tab."
    )
    assert refusal["ru"] == (
        f"⚠ Недостаточно кредитов: ответ модели {label} стоит 3 кредита, а у вас 1. Пополните баланс на вкладке «Пополнить»."
    )
    assert marked["en"].startswith("⚠ Not sent") and marked["ru"].startswith("⚠ Не отправлено")


def test_top_up_password_change_and_popups_follow_the_browser(app, chat_settings):
    russian = signed_in_request(chat_settings, "alice", accept_language=RUSSIAN)
    english = signed_in_request(chat_settings, "bob")  # no Accept-Language at all: English
    assert app.top_up(russian, 2)[:2] == ("Добавлено 2 кредита. Новый баланс: 12 кредитов.", "**Баланс: 12 кредитов**")
    assert app.top_up(english, 2)[:2] == ("Added 2 credits. New balance: 12 credits.", "**Balance: 12 credits**")
    assert app.top_up(russian, 0)[0] == "⚠ Количество кредитов — от 1 до 1,000; получено 0."
    assert app.top_up(english, 0)[0] == "⚠ Credits must be from 1 to 1,000; got 0."

    assert app.change_password(russian, "wrong password", "x")["account_message"] == "⚠ Текущий пароль неверен."
    assert app.change_password(english, "wrong password", "x")["account_message"] == "⚠ The current password is wrong."
    done = app.change_password(russian, "long enough pw", "a new long password")["account_message"]
    assert done == "Пароль изменён. Других открытых сеансов не было."
    assert app.change_password(english, "long enough pw", "a new long password")["account_message"] == (
        "Password changed. No other session was signed in."
    )

    with pytest.raises(gr.Error) as refused:  # a popup, its title too
        app.history(browser_request(None, accept_language=RUSSIAN), 1)
    assert (refused.value.message, refused.value.title) == ("Пожалуйста, войдите.", "Ошибка")
    with pytest.raises(gr.Error) as refused:
        app.history(browser_request(None), 1)
    assert (refused.value.message, refused.value.title) == ("Please log in.", "Error")
    assert list(app.regenerate(russian, "mini")) == [{"chat_notice": "⚠ Ещё нет ответа, который можно получить заново."}]


def test_the_lists_and_the_statement_follow_the_browser(app, chat_settings):
    russian = signed_in_request(chat_settings, "alice", accept_language=RUSSIAN)
    statement = app.statement_first(russian)
    assert statement["statement_label"] == "Страница 1 из 1 — 1 запись"
    assert list(statement["statement_table"].columns) == ["Время (UTC)", "Вид", "Сумма", "Баланс после"]
    assert statement["statement_table"]["Вид"].tolist() == ["регистрация"]
    assert "| Регистрация | 1 | +10 |" in statement["statement_totals"]
    assert "Чатов пока нет" in app.search_chats(russian, "")["chat_list"]
    users = app.users_state(russian, "", 1)
    assert users["users_page_label"] == "Страница 1 из 1 · 1 учётная запись"
    assert users["users_table"].values.tolist()[0][3:5] == ["администратор", "активна"]
    english = app.statement_first(signed_in_request(chat_settings, "bob"))
    assert english["statement_label"] == "Page 1 of 1 — 1 entry" and english["statement_table"]["Kind"].tolist() == ["signup"]


def test_the_sign_in_routes_answer_in_the_browser_s_language(chat_settings, demo_engine):
    from gemma_chat.web.app import create_app

    client = TestClient(create_app(chat_settings, demo_engine).fastapi, base_url="http://127.0.0.1:7860")
    client.post("/auth/register", json={"username": "alice", "password": "long enough pw"})
    wrong = {"username": "alice", "password": "not her password"}
    assert client.post("/auth/login", json=wrong, headers={"Accept-Language": RUSSIAN}).json()["message"] == (
        "Неверное имя пользователя или пароль."
    )
    assert client.post("/auth/login", json=wrong).json()["message"] == "Wrong username or password."
