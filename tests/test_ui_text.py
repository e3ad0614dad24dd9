"""The UI's words (ui/text.py): both languages have every key, every message the UI can receive from
the services has a Russian translation, and a browser that asks for Russian gets Russian messages
while English stays exactly as it was."""

from __future__ import annotations

import ast
import string

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from conftest import ROOT, browser_request, shown_after, signed_in_request, users_table_rows
from gemma_chat.accounts import admin, auth
from gemma_chat.backends import local
from gemma_chat.errors import ModelUnavailableError, UnknownUserError, ValidationError
from gemma_chat.ui import ChatApp
from gemma_chat.ui.text import (
    MESSAGES,
    RUSSIAN_BY_ENGLISH,
    TRANSLATIONS,
    language_of,
    text,
    translated,
)
from gemma_chat.wording import Message, plural_form


def template_fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}

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


# --- every message that can reach the UI is in the catalogue, by its template ----------------------

# Where the UI's messages come from: the services it calls, and its own modules (every one of ui/).
# The rest (cli.py, config.py, inference/download.py, ops/backup.py, store/, …) speak to the command
# line only, in English.
MESSAGE_SOURCES = [
    "accounts/admin.py", "accounts/auth.py", "chats/turn.py", "chats/conversations.py", "chats/documents.py", "chats/versions.py", "inference/engine.py", "chats/history.py", "accounts/keys.py", "billing/ledger.py",
    "ops/reports.py", "web/app.py", "web/edge.py", "backends/base.py", "backends/local.py", "backends/llama_runner.py", "backends/openai.py",
    "backends/worker.py", "backends/batch_loop.py", "errors.py", "numbers.py",
] + sorted(str(path.relative_to(ROOT / "gemma_chat")) for path in (ROOT / "gemma_chat" / "ui").rglob("*.py"))
NOT_GEMMA_CHAT_ERRORS = {"ValueError", "RuntimeError", "OSError", "TypeError", "KeyError", "HeadTooLargeError"}


def message_sites(tree) -> list:
    """The expressions a module hands the UI as a message: a GemmaChatError's template (raised or
    returned), a Message's, a `message=` (a chat turn's, the worker's error event), what it translates,
    and an error class's default template."""
    sites = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func).rsplit(".", 1)[-1]
            if ((name.endswith("Error") and name not in NOT_GEMMA_CHAT_ERRORS) or name == "Message") and node.args:
                sites.append(node.args[0])
            if name == "translated" and len(node.args) == 2:
                sites.append(node.args[1])
            sites += [k.value for k in node.keywords if k.arg in ("message", "template")]
        elif isinstance(node, ast.FunctionDef) and node.name == "__init__" and node.args.defaults:
            sites += [d for a, d in zip(node.args.args[-len(node.args.defaults):], node.args.defaults) if a.arg == "template"]
    return sites


def constants_of(tree) -> dict[str, list[str]]:
    """A module's constant messages by name: `NAME = "…"`, `NAME = Message("…")`, a dict of them."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            if isinstance(value, ast.Call) and ast.unparse(value.func) == "Message" and value.args:
                value = value.args[0]
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found[node.targets[0].id] = [value.value]
            elif isinstance(value, ast.Dict) and value.values and all(
                isinstance(v, ast.Constant) and isinstance(v.value, str) for v in value.values
            ):
                found[node.targets[0].id] = [v.value for v in value.values]
    return found


def scan_templates():
    """(template → where it is used, sites that compose a message instead of naming a template)."""
    trees = {name: ast.parse((ROOT / "gemma_chat" / name).read_text()) for name in MESSAGE_SOURCES}
    constants = {}
    for tree in trees.values():
        constants.update(constants_of(tree))

    def templates(node) -> list[str] | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value] if node.value.strip() else []
        if isinstance(node, ast.IfExp):
            return (templates(node.body) or []) + (templates(node.orelse) or [])
        if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)):
            name = (node.value if isinstance(node, ast.Subscript) else node)
            return constants.get(name.id if isinstance(name, ast.Name) else getattr(name, "attr", ""), [])
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "Message" and node.args:
            return templates(node.args[0])
        return None  # a message built at run time: an f-string, a concatenation, .format()

    used, composed = {}, []
    for name, tree in trees.items():
        for site in message_sites(tree):
            found = templates(site)
            if found is None:
                if isinstance(site, (ast.JoinedStr, ast.BinOp)) or (isinstance(site, ast.Call) and ast.unparse(site.func).endswith(".format")):
                    composed.append(f"gemma_chat/{name}:{site.lineno}: {ast.unparse(site)}")
                continue  # another message passed on (exc.message, a reason), or a value the UI does not show
            for template in found:
                used.setdefault(template, []).append(f"gemma_chat/{name}:{site.lineno}")
    return used, composed


USED, COMPOSED = scan_templates()


def test_the_ui_s_messages_are_templates_with_parameters_never_composed_english():
    assert COMPOSED == [], "raise a template with its parameters instead (errors.py):\n" + "\n".join(COMPOSED)
    assert len(USED) > 60 and "No user named {username!r}." in USED  # the scan does find them


def test_every_message_the_ui_can_receive_has_a_russian_translation():
    untranslated = [f"{where[0]}: {template}" for template, where in USED.items() if template not in RUSSIAN_BY_ENGLISH]
    assert untranslated == [], "add these to ui/text.py's RUSSIAN_BY_ENGLISH:\n" + "\n".join(untranslated)


def test_every_russian_translation_is_of_a_template_the_app_uses():
    unused = [english for english in RUSSIAN_BY_ENGLISH if english not in USED]
    assert unused == [], "no module sends these any more; remove them or fix the template:\n" + "\n".join(unused)


def test_a_message_inside_a_message_is_translated_and_an_unknown_one_stays_english():
    failed = Message("{reason} Nothing was charged. (error {error_id})", reason=local.CRASH_MESSAGE, error_id="4f2a")
    assert failed == "The model stopped unexpectedly. Nothing was charged. (error 4f2a)"
    assert translated("ru", failed) == "Модель неожиданно остановилась. Кредиты не списаны. (ошибка 4f2a)"
    assert translated("ru", Message("Something unheard of.")) == "Something unheard of."
    assert translated("en", failed) is failed
    unavailable = ModelUnavailableError("The {label} model is not available: {reason}", label="mini", reason="no file")
    assert translated("ru", unavailable) == "Модель mini недоступна: no file"
    assert translated("en", unavailable) == str(unavailable) == "The mini model is not available: no file"


@pytest.mark.parametrize("value", ["a{b}.*", "{username}", "{0}", "}{", "(.+?)$", "\\1 \\g<0>", "x' is taken; choose another."])
def test_parameters_are_never_parsed_so_any_text_translates(database, value):
    """A parameter is filled in as it is: braces, regex syntax and text that looks like the template's own words."""
    with pytest.raises(UnknownUserError) as refused:
        auth.require_user(value)
    assert str(refused.value) == f"No user named {value!r}."
    assert translated("ru", refused.value) == f"Нет пользователя с именем {value!r}."
    # the words of the template itself inside a parameter, and a message inside it with braces of its own
    tricky = ModelUnavailableError(
        "The {label} model is not available: {reason}", label=f"{value} model is not available: x", reason=value
    )
    assert translated("ru", tricky) == f"Модель {value} model is not available: x недоступна: {value}"
    turn = Message("{reason} Nothing was charged. (error {error_id})", reason=tricky.message, error_id=value)
    assert translated("ru", turn) == f"Модель {value} model is not available: x недоступна: {value} Кредиты не списаны. (ошибка {value})"


def test_an_error_shows_its_english_unchanged_and_its_parameters_stay_at_hand():
    error = ValidationError("Credits must be from 1 to {maximum:,}; got {value:,}.", maximum=1000, value=0)
    assert str(error) == error.message == "Credits must be from 1 to 1,000; got 0."
    assert (error.message.template, error.message.params) == (error.template, {"maximum": 1000, "value": 0})
    assert translated("ru", error) == "Количество кредитов — от 1 до 1,000; получено 0."
    assert str(ValidationError("Braces {as they are} without parameters.")) == "Braces {as they are} without parameters."


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
    (row,) = users_table_rows(users["users_table"])
    assert row["cells"][3:5] == ["администратор", "активна"]
    assert row["menu"] == {
        "grant": "Начислить кредиты…", "set_password": "Задать пароль…", "disable": "Отключить…",
        "demote": "Снять права администратора…",
    }
    asked = app.account_request(russian, f"disable:{row['id']}", "", 1)
    assert asked["account_question"] == "Отключить **alice**? Все её сеансы завершатся, а API-ключи перестанут работать."
    assert asked["account_confirm"]["value"] == "Отключить"
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
