"""Hostile and malformed input, property-based: every handler a client can reach, 500 examples each.

The UI's callbacks are called in-process exactly as Gradio calls them (tests/test_ui.py), with what
a hostile client can put in a request body: any unicode (control characters, NUL, lone surrogates,
bidi overrides), megabyte strings, SQL- and HTML-looking text, and numbers that are negative, zero,
huge, fractional, NaN or not numbers at all. Whatever comes in: no unhandled exception, never the
"something went wrong" path, a clear message, and no change to the database when it is refused.

The chat handler runs 500 examples against an engine that echoes the message back (so the answer
is hostile too and must come back escaped), and 100 more through the real model's tokenizer.
"""

from __future__ import annotations

import dataclasses
import html

import gradio as gr
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import browser_request, demo_settings, signed_in_request
from gemma_chat.accounts import auth, sessions
from gemma_chat.billing import ledger
from gemma_chat.store.db import database
from gemma_chat.inference.engine import Engine, GenerationResult
from gemma_chat.errors import GemmaChatError
from gemma_chat.ui.markup import FOOTER_CLOSE, FOOTER_OPEN, as_markdown
from gemma_chat.ui import ChatApp, owned_by
from gemma_chat.web.app import login_with_session, register_with_session

from test_markup import FOOTER_TAGS, html_tokens

from .conftest import scalar, signed_up, snapshot
from .gradio_http import GradioSession

EXAMPLES = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

MEGABYTE = 1_000_000
NASTY = [
    "", " ", "\x00", "a\x00b", "alice\x00", "\x00" * 64, "\r\n", "\t", "\x1b[31mred", "\u202eevil", "\ufeffbom", "\u200b",
    "' OR '1'='1", "alice'; DROP TABLE users; --", "1; DELETE FROM ledger_entries", "\" OR 1=1 --", "%", "_", "\\",
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "&lt;b&gt;", "{{7*7}}", "${7*7}", "../../etc/passwd",
    "\ud800", "a\udfffb", "🎉" * 40, "é" * 37, "漢" * 25, "x" * 8001, "x" * MEGABYTE, "\x00" * MEGABYTE, "<" * MEGABYTE,
]
hostile_text = st.one_of(
    st.text(st.characters(codec=None, categories=None), max_size=80),  # every code point, surrogates too
    st.text(st.characters(categories=["Cc", "Cf", "Cs", "Zs", "Zl", "Zp"]), max_size=40),
    st.sampled_from(NASTY),
    st.builds(lambda piece, n: piece * n, st.text(min_size=1, max_size=4), st.integers(1_000, MEGABYTE // 4)),
    st.from_regex(r"[A-Za-z0-9._-]{3,32}", fullmatch=True),  # valid usernames, so some attempts succeed
)
hostile_number = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 1000, 1001, -0.0, 2.5, 1e308, float("nan"), float("inf"), True, False]),
    st.sampled_from(["5", " 7 ", "+3", "-3", "0", "1e3", "0x10", "1_000", "٣", "５", "10.0", "nan", "inf", "", "1" * MEGABYTE]),
)
hostile_value = st.one_of(
    hostile_text, hostile_number, st.none(), st.binary(max_size=20),
    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def mostly(usual, rare, percent: int = 80):
    """`usual` in `percent` of the examples, else `rare`: enough examples get past the first check."""
    return st.integers(0, 99).flatmap(lambda n: usual if n < percent else rare)


def state() -> dict:
    """Every row that matters for money, accounts and logs."""
    return {
        table: database.execute_sql(f"SELECT * FROM {table} ORDER BY id").fetchall()
        for table in ("users", "holds", "ledger_entries", "interactions", "error_events", "admin_actions")
    }


def assert_clear(message) -> None:
    assert isinstance(message, str) and message.strip(), repr(message)
    assert "Something went wrong" not in message, message  # the unexpected-error path: a bug
    assert len(message) < 500, message[:500]  # short, though it may quote a 309-digit amount back


class EchoEngine:
    """The real engine's tiers; the answer is the message itself, instantly."""

    def __init__(self, engine):
        self.engine = engine

    def tiers(self):
        return self.engine.tiers()

    def generate(self, tier, messages, *, stop=None, sampling=None):
        answer = messages[-1]["content"][:300]
        yield answer
        yield GenerationResult(answer, 1, 1, "stop", 0, 0, "echo")


@pytest.fixture
def app(chat_settings, demo_engine):
    return ChatApp(chat_settings, demo_engine)


@pytest.fixture
def alice(app):
    """The browser request of a signed-in alice (her session cookie)."""
    session = signed_in_request(app.settings, "alice")
    ledger.grant_credits(session.user_id, 100_000, actor_id=None)  # enough for every example
    return session


def sign_in(function, *args):
    """What the /auth routes do (web/app.py): a session token, or the message shown under the form."""
    try:
        return function(*args), ""
    except GemmaChatError as refusal:
        return None, refusal.message


def test_registration_survives_anything(app):
    seen = {"accepted": 0, "refused": 0}

    @EXAMPLES
    @given(username=hostile_value, password=st.one_of(hostile_value, st.just("long enough pw")))
    @example(username="carol", password="\ud800" * 9)  # found by this test: a lone surrogate crashed hashing
    @example(username="\ud800", password="long enough pw")
    def register(username, password):
        before = state()
        token, message = sign_in(register_with_session, app.settings, username, password)
        after = state()
        if token is None:
            assert_clear(message)
            assert after == before
            seen["refused"] += 1
        else:
            assert sessions.resolve_session(app.settings, token).user.username == username.strip()
            assert len(after["users"]) == len(before["users"]) + 1
            assert len(after["ledger_entries"]) == len(before["ledger_entries"]) + 1
            assert after["error_events"] == before["error_events"]
            seen["accepted"] += 1

    register()
    assert seen["accepted"] >= 1 and seen["refused"] >= 300 and sum(seen.values()) >= 500, seen


def test_login_survives_anything(app, alice):
    LOCKOUT = slice(7, 10)  # failed_logins, first_failed_at, locked_until: a failed login counts

    def without_lockout(rows):
        return [row[: LOCKOUT.start] + row[LOCKOUT.stop :] for row in rows]

    @EXAMPLES
    @given(
        username=st.one_of(hostile_value, st.sampled_from(["alice", "ALICE", " alice ", "alice\x00"])),
        password=st.one_of(hostile_value, st.just("long enough pw")),
    )
    @example(username="\ud800", password=None)  # found by this test: a lone surrogate reached SQLite
    def login(username, password):
        calls.append(1)
        before = state()
        token, message = sign_in(login_with_session, app.settings, username, password, auth.LOCAL_CLIENT)
        after = state()
        if token is None:
            assert_clear(message)
            assert without_lockout(after["users"]) == without_lockout(before["users"])
            assert {k: v for k, v in after.items() if k != "users"} == {k: v for k, v in before.items() if k != "users"}
        else:
            assert sessions.resolve_session(app.settings, token).user.username == "alice" and password == "long enough pw"

    calls = []
    login()
    assert len(calls) >= 500


def test_top_up_survives_any_amount(app, alice):
    @EXAMPLES
    @given(amount=hostile_value)
    def top_up(amount):
        calls.append(1)
        before = state()
        message, balance, _ = app.top_up(alice, amount)
        after = state()
        if message.startswith("⚠"):
            assert_clear(message)
            assert after == before and balance == gr.update()
        else:
            (entry,) = [row for row in after["ledger_entries"] if row not in before["ledger_entries"]]
            added = entry[2]
            assert 1 <= added <= app.settings.max_topup and message.startswith(f"Added {added} credit")
            assert not isinstance(amount, bool) and float(str(amount).strip()) == added
            assert after["error_events"] == before["error_events"]

    calls = []
    top_up()
    assert len(calls) >= 500
    assert ledger.get_balance(alice.user_id).held == 0


def test_an_admin_grant_survives_anything(app, alice):
    """alice is the first account, so an administrator: the Users section's Grant credits, as its dialog runs it."""
    seen = {"accepted": 0, "refused": 0}

    @EXAMPLES
    @given(
        target=mostly(st.sampled_from(["alice", " ALICE "]), hostile_value),
        amount=mostly(st.integers(-50, 50), hostile_value, 50),
        note=mostly(st.just("why"), hostile_value, 50),
    )
    @example(target="alice", amount=5, note="\ud800")  # found by this test: a lone surrogate reached SQLite
    def grant(target, amount, note):
        before = state()
        shown = app.act_on_account(alice, "grant", target, "", 1, amount=amount, note=note)
        after = state()
        message = shown.get("users_message") or shown.get("account_dialog_message")
        if message.startswith("⚠"):
            assert_clear(message)
            assert after == before
            seen["refused"] += 1
        else:
            assert message.startswith("Granted ")
            (entry,) = [row for row in after["ledger_entries"] if row not in before["ledger_entries"]]
            (action,) = [row for row in after["admin_actions"] if row not in before["admin_actions"]]
            assert entry[3] == "grant" and entry[7] == alice.user_id and action[2:4] == ("alice", "grant")
            assert after["error_events"] == before["error_events"]
            seen["accepted"] += 1

    grant()
    assert seen["accepted"] >= 50 and seen["refused"] >= 100, seen
    assert ledger.verify_ledger() == []


def chat_property(app, alice, message, tier):
    before = state()
    outputs = list(app.send(alice, tier, message, [], []))
    if len(outputs) == 1 and "chatbot" not in outputs[0]:  # refused beside the box: nothing else changed
        assert outputs[0]["chat_notice"].startswith("⚠ ")
        assert_clear(outputs[0]["chat_notice"].removeprefix("⚠ "))
        assert state() == before
        return "refused"
    chatbot = {key: value for update in outputs for key, value in update.items()}["chatbot"]
    user_bubble, answer_bubble = chatbot[-2:]
    # Markup arrives as text: outside code it is escaped, and to a markdown renderer with raw HTML
    # on, neither bubble holds any HTML (code keeps its `<`, which the renderer escapes itself) but
    # the element the app puts the answer's footer in (ui/markup.py with_footer).
    assert user_bubble["content"] == as_markdown(message)
    answer = answer_bubble["content"].replace(FOOTER_OPEN, "").replace(FOOTER_CLOSE, "")
    if "`" not in message and "~~~" not in message:
        assert user_bubble["content"] == html.escape(message, quote=False)
        assert "<" not in answer and ">" not in answer
    assert html_tokens(user_bubble["content"]) == []
    assert html_tokens(answer_bubble["content"]) == (FOOTER_TAGS if FOOTER_OPEN in answer_bubble["content"] else [])
    after = state()
    too_long = "too long for" in answer_bubble["content"]  # a genuine model error, logged with its id
    assert len(after["error_events"]) == len(before["error_events"]) + too_long
    assert len(after["interactions"]) == len(before["interactions"]) + 1
    assert ledger.get_balance(alice.user_id).held == 0
    return "answered"


def test_chat_messages_survive_anything(app, alice, demo_engine):
    app.engine = EchoEngine(demo_engine)
    seen = {"answered": 0, "refused": 0}

    @EXAMPLES
    @given(message=mostly(hostile_text, hostile_value), tier=mostly(st.sampled_from(["mini", "pro"]), hostile_value))
    @example(message="hi \ud800", tier="mini")  # found by this test: a lone surrogate reached SQLite
    @example(message="hi", tier=[])  # found by this test: an unhashable tier name
    def chat(message, tier):
        seen[chat_property(app, alice, message, tier)] += 1

    chat()
    assert seen["answered"] >= 100 and seen["refused"] >= 100 and sum(seen.values()) >= 500, seen


@pytest.fixture(scope="module")
def one_token_engine(tmp_path_factory):
    """The real bundled model answering one token: the tokenizer and prompt format meet every input."""
    base = demo_settings(tmp_path_factory.mktemp("one-token"))
    tiers = {name: dataclasses.replace(tier, max_tokens=1) for name, tier in base.tiers.items()}
    engine = Engine.load(dataclasses.replace(base, tiers=tiers), log=lambda line: None)
    yield engine
    engine.close()


@pytest.mark.slow
def test_chat_messages_reach_the_real_model_safely(app, alice, one_token_engine):
    app.engine = one_token_engine

    @settings(EXAMPLES, max_examples=100)
    @given(message=st.one_of(hostile_text.filter(lambda text: len(text) <= 3000), st.sampled_from(NASTY[:30])))
    def chat(message):
        chat_property(app, alice, message, "mini")

    chat()


def test_history_paging_survives_any_page(app, alice):
    for n in range(3):
        list(app.send(alice, "mini", f"question {n}", [], []))

    @EXAMPLES
    @given(page=hostile_value, step=st.sampled_from([None, -1, +1]))
    @example(page="C", step=+1)  # found by this test: Next with a non-numeric page was an internal error
    def history(page, step):
        calls.append(1)
        before = state()
        try:
            shown = app.history(alice, page) if step is None else app.history_step(alice, page, step)
            table, label, shown_page, full = (
                shown[name] for name in ("history_table", "history_page_label", "history_page", "history_full")
            )
        except gr.Error as refusal:
            assert_clear(refusal.message)
        else:
            assert shown_page == 1 and label == "Page 1 of 1" and len(table) == 3
            assert all(isinstance(row, tuple) for row in owned_by(alice.user_id, full))
        assert state() == before  # reading history never writes

    calls = []
    history()
    assert len(calls) >= 500


@pytest.mark.slow
def test_hostile_requests_over_http_get_clear_answers_and_change_nothing_when_refused(fault_app):
    """The same attacks as a raw client sends them: JSON with lone surrogates, NULs, a megabyte."""
    admin = signed_up(fault_app, "admin")
    user = signed_up(fault_app, "victim")
    surrogate, nul, huge = "\ud800", "a\x00b", "x" * MEGABYTE
    errors = scalar(fault_app.data_dir, "SELECT COUNT(*) FROM error_events")

    def refused(client, endpoint, *data, check=None):
        before = snapshot(fault_app.data_dir)
        outcome = client.call(endpoint, *data)
        message = outcome.error if not outcome.ok else next(v for v in outcome.data if isinstance(v, str) and v)
        assert_clear(message.lstrip("⚠ "))
        if check:
            assert check in message, message
        assert snapshot(fault_app.data_dir) == before, (endpoint, data[-1][:20] if isinstance(data[-1], str) else data[-1])

    def refused_sign_in(route, username, password, check=None):
        before = snapshot(fault_app.data_dir)
        client = GradioSession(fault_app.url)
        message = client.login(username, password) if route == "login" else client.register(username, password)
        assert_clear(message)
        if check:
            assert check in message, message
        assert "gemma_session" not in client.http.cookies
        assert snapshot(fault_app.data_dir) == before, (route, username[:20] if isinstance(username, str) else username)

    for username, password in [(surrogate, "long enough pw"), ("carol", surrogate * 9), (nul, nul), (huge, huge),
                               ("alice'; DROP TABLE users; --", "' OR '1'='1"), ("<script>x</script>", "long enough pw")]:
        refused_sign_in("register", username, password)
        refused_sign_in("login", username, password, check="Wrong username or password.")
    for message in [surrogate, f"hi {surrogate}", nul, huge, "   ", None]:
        refused(user, "chat", "mini", message, [], None, "")  # model, message, chatbot, context, system prompt
    for amount in [surrogate, nul, huge, -5, 0, 10**30, 1e308, 2.5, "five", None, [1], {"a": 1}, True]:
        refused(user, "top_up", amount)
    for day in [surrogate, nul, huge, "2026-13-45", "' OR 1=1 --"]:
        refused(admin, "admin_report", day, "", check="YYYY-MM-DD")
        refused(user, "admin_report", day, "", check="Administrators only.")
    for text in ["alice'; DROP TABLE users; --", "<img src=x onerror=alert(1)>", "\u202e\ufeff\x1b[31m"]:
        reply = user.chat("mini", text)  # accepted: stored as it is, shown as text
        # The base model may answer an invisible prompt with whitespace only: then it says so and charges nothing.
        assert reply.charged == (0 if "empty answer" in reply.text else 1), reply.text
        shown = reply.outcome.data[0][-2]["content"]
        assert "".join(part["text"] for part in shown) == html.escape(text, quote=False)
        assert scalar(fault_app.data_dir, "SELECT prompt FROM interactions ORDER BY id DESC LIMIT 1") == text
    assert scalar(fault_app.data_dir, "SELECT COUNT(*) FROM error_events") == errors
    assert scalar(fault_app.data_dir, "SELECT COUNT(*) FROM users") == 2
