"""The UI's callbacks called directly, as Gradio calls them: every screen's success and failure.

Each callback must re-check the session and the user's rights itself: these tests call them with
no session, an expired one, and a non-admin's. A session is a browser's cookie: the tests sign in
through the functions behind the /auth routes and pass the request a browser would send (tests/conftest.py).
The sign-in form's messages come from those routes: tests/test_web.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import gradio as gr
import pytest

from conftest import browser_request, shown_after, signed_in_request
from gemma_chat.accounts import sessions
from gemma_chat.billing import ledger
from gemma_chat.store.db import Interaction, LedgerEntry, WebSession
from gemma_chat.ui import ChatApp, owned_by
from gemma_chat.ui.markup import FOOTER_CLOSE, FOOTER_MARK, FOOTER_OPEN


@pytest.fixture
def app(chat_settings, demo_engine):
    return ChatApp(chat_settings, demo_engine)


def sign_up(app, username="alice", password="long enough pw"):
    """A browser's request after signing up: it carries the new session's cookie."""
    return signed_in_request(app.settings, username, password)


def chat(app, session, message="What is the capital of France?", tier="mini", turns=None):
    """The updates of one Send, each the outputs it changes, by name."""
    return list(app.send(session, tier, message, [], turns or []))


NO_SESSION = browser_request(None)


def select(index) -> gr.SelectData:
    return gr.SelectData(None, {"index": index, "value": None})


def test_register_signs_in_with_the_balance_and_the_first_user_is_admin(app):
    shown = app.restore(sign_up(app, "alice"))
    login_view, app_view, admin_tab, model = (shown[name] for name in ("login_view", "app_view", "admin_tab", "model"))
    balance, who = shown["balance"], shown["who"]
    assert shown["password"] == "" and shown["login_message"] == ""
    assert (login_view["visible"], app_view["visible"], admin_tab["visible"]) == (False, True, True)
    assert "Balance: 10 credits" in balance and "alice" in who
    labels = [label for label, _ in model["choices"]]
    assert labels == ["Gemma 3 270M (bundled demo) for mini · 1 credit", "Gemma 3 270M (bundled demo) for pro · 3 credits"]
    second = app.restore(sign_up(app, "bob"))
    assert second["admin_tab"]["visible"] is False  # no Admin tab for a plain user


def test_a_reload_keeps_the_session_and_no_cookie_shows_the_sign_in_form(app):
    request = sign_up(app, "alice")
    for _ in range(2):  # the page's load event, on every reload
        assert app.restore(request)["app_view"]["visible"] is True
    shown = app.restore(NO_SESSION)
    assert (shown["login_view"]["visible"], shown["app_view"]["visible"]) == (True, False)
    assert shown["password"] == shown["login_message"] == gr.update()  # a form the user may be filling in is left alone
    assert app.restore(browser_request("a forged token of the right length....."))["login_view"]["visible"] is True


def test_chat_streams_and_updates_the_balance(app):
    session = sign_up(app)
    outputs = chat(app, session)
    assert len(outputs) > 2  # streamed, not one final message
    assert outputs[0]["message"] == "" and outputs[0]["send_button"]["visible"] is False  # held: the box empties, Send turns into Stop
    assert all("message" not in update for update in outputs[1:-1])  # what is typed meanwhile stays in the box
    shown = shown_after(outputs)
    assert shown["chatbot"][-1]["content"].endswith("— Gemma 3 270M (bundled demo) for mini · 1 credit" + FOOTER_CLOSE)
    assert shown["message"] == "" and "Balance: 9 credits" in shown["balance"]
    assert shown["send_button"]["visible"] is True and shown["stop_button"]["visible"] is False
    assert shown["turns"] == [("What is the capital of France?", Interaction.get().answer)]


def test_chat_without_a_session_or_with_an_expired_one_is_refused(app):
    with pytest.raises(gr.Error, match="log in"):
        chat(app, NO_SESSION)
    session = sign_up(app)
    idle = dt.timedelta(seconds=app.settings.session_idle_s + 1)
    WebSession.update(last_seen_at=WebSession.get().last_seen_at - idle).execute()
    with pytest.raises(gr.Error, match="expired"):
        chat(app, session)
    assert Interaction.select().count() == 0
    session = sign_up(app, "bob")
    WebSession.update(expires_at=WebSession.created_at).where(WebSession.user == session.user_id).execute()
    with pytest.raises(gr.Error, match="expired"):  # past its absolute age, however active
        chat(app, session)


def test_a_blank_message_is_refused_beside_the_box_and_nothing_is_marked_failed(app):
    (refused,) = chat(app, sign_up(app), message="   ")
    assert refused["chat_notice"] == "⚠ Type a message first." and "message" not in refused and "chatbot" not in refused


def test_markup_is_shown_as_text_in_the_chat(app):
    chatbot = shown_after(chat(app, sign_up(app), message="<img src=x onerror=alert(1)>"))["chatbot"]
    assert chatbot[0]["content"] == "&lt;img src=x onerror=alert(1)&gt;"


def test_history_pages_and_full_text(app):
    session = sign_up(app)
    app.settings = dataclasses.replace(app.settings, history_page_size=2)
    for n in range(3):
        chat(app, session, message=f"question {n} " + "long " * 30)
    shown = app.history(session, 1)
    table, label, page, full = (shown[name] for name in ("history_table", "history_page_label", "history_page", "history_full"))
    assert label == "Page 1 of 2" and len(table) == 2
    assert table.iloc[0]["Prompt"].startswith("question 2") and table.iloc[0]["Prompt"].endswith("…")
    assert app.history_detail(session, full, select([0, 4]))[0] == "question 2 " + "long " * 29 + "long"
    assert app.history_detail(sign_up(app, "bob"), full, select([0, 4])) == ("", "")  # another user's page State
    shown = app.history_step(session, page, +1)
    table, label = shown["history_table"], shown["history_page_label"]
    assert label == "Page 2 of 2" and table.iloc[0]["Prompt"].startswith("question 0")


def test_history_needs_a_session_and_shows_only_ones_own(app):
    with pytest.raises(gr.Error, match="log in"):
        app.history(NO_SESSION, 1)
    chat(app, sign_up(app, "alice"))
    shown = app.history(sign_up(app, "bob"), 1)
    table, label = shown["history_table"], shown["history_page_label"]
    assert len(table) == 0 and "no chats yet" in label


def test_top_up_adds_credits_and_refuses_bad_amounts(app):
    session = sign_up(app)
    for bad in [0, -5, 2.5, 1001, None, "ten"]:
        message, balance, _ = app.top_up(session, bad)
        assert message.startswith("⚠") and balance == gr.update()
    assert LedgerEntry.select().where(LedgerEntry.kind == "topup").count() == 0
    message, balance, table = app.top_up(session, 5)
    assert "Added 5 credits" in message and "Balance: 15 credits" in balance
    assert list(table.iloc[0][["Kind", "Amount", "Balance after"]]) == ["topup", "+5", 15]
    assert app.top_up(NO_SESSION, 5)[0] == "⚠ Please log in."


def test_the_statement_pages_and_totals_are_the_signed_in_user_s_own(chat_settings, demo_engine):
    from gemma_chat.errors import NotLoggedInError

    app = ChatApp(dataclasses.replace(chat_settings, history_page_size=3), demo_engine)
    alice, bob = sign_up(app, "alice"), sign_up(app, "bob")
    for amount in (1, 2, 3, 4):
        app.top_up(alice, amount)
    app.top_up(bob, 99)
    first = app.statement_first(alice)
    assert first["statement_label"] == "Page 1 of 2 — 5 entries" and first["statement_page_state"] == 1
    assert list(first["statement_table"]["Amount"]) == ["+4", "+3", "+2"]
    assert "| Sign-up | 1 | +10 |" in first["statement_totals"] and "| Top-ups | 4 | +10 |" in first["statement_totals"]
    assert "| **Balance** | 5 | **20** |" in first["statement_totals"]
    second = app.statement_next(alice, 1)
    assert second["statement_label"].startswith("Page 2 of 2") and list(second["statement_table"]["Amount"]) == ["+1", "+10"]
    assert app.statement_next(alice, 2)["statement_page_state"] == 2  # no page past the last
    assert app.statement_previous(alice, "junk")["statement_page_state"] == 1
    assert list(app.statement_first(bob)["statement_table"]["Amount"]) == ["+99", "+10"]
    with pytest.raises(NotLoggedInError):
        app.statement_first(NO_SESSION)


def test_admin_report_is_for_admins_only(app):
    admin = sign_up(app, "alice")
    user = sign_up(app, "bob")
    chat(app, user, tier="pro")
    with pytest.raises(gr.Error, match="Administrators only"):
        app.admin_report(user, "", "")
    with pytest.raises(gr.Error, match="log in"):
        app.admin_report(NO_SESSION, "", "")
    shown = app.admin_report(admin, "", "")
    by_model, by_user, performance, active = (
        shown[name] for name in ("model_table", "user_table", "performance_table", "active_table")
    )
    assert by_model.iloc[0]["Requests"] == 1 and by_model.iloc[0]["Credits"] == 3
    assert performance.iloc[0]["Requests"] == 1 and performance.iloc[0]["Error rate"] == 0
    assert performance.iloc[0]["Tokens/s"] > 0 and list(active["Active users"]) == [1]
    assert by_user.set_index("User").loc["bob", "Credits spent"] == 3
    # Readable headers in both languages, never the report's snake_case names.
    assert list(performance.columns) == [
        "Model", "Requests", "Error rate", "First token, median (ms)", "First token, p95 (ms)", "Tokens/s",
        "Answer, median (ms)", "Answer, p95 (ms)",
    ]
    russian = app.admin_report(browser_request(admin.token, accept_language="ru-RU,ru;q=0.9"), "", "")
    assert list(russian["user_table"].columns) == [
        "Пользователь", "Потрачено кредитов", "Пополнено", "Начислено", "Баланс", "Запросов"
    ]
    assert not [name for name in shown["errors_table"].columns if "_" in name]
    bad_date = app.admin_report(admin, "last week", "")  # said beside the dates; the charts stay as they were
    assert bad_date == {"report_notice": "⚠ From must be a date as YYYY-MM-DD; got 'last week'."}


def test_a_demoted_admin_loses_the_admin_reports_at_once(app):
    from gemma_chat.accounts import admin

    alice = sign_up(app, "alice")
    admin.set_admin(None, "alice", False)
    with pytest.raises(gr.Error, match="log in"):  # the demotion ended the session
        app.admin_report(alice, "", "")
    alice = signed_in_request(app.settings, "alice", register=False)
    with pytest.raises(gr.Error, match="Administrators only"):
        app.admin_report(alice, "", "")


def test_a_disabled_user_is_signed_out(app):
    from gemma_chat.accounts import admin

    session = sign_up(app, "alice")
    admin.set_disabled(None, "alice", True)
    with pytest.raises(gr.Error, match="This account is disabled"):  # not "expired": the user is told why
        chat(app, session)
    assert app.check_session(session)[0]["visible"] is True  # the page returns to sign-in
    assert app.restore(session)["login_message"] == "This account is disabled. Ask an administrator to enable it."


def test_logout_ends_the_session(app):
    session = sign_up(app)
    assert sessions.revoke_session(session.token)  # what /auth/logout does
    outputs = app.restore(session)  # the reload after it, even if the browser kept the cookie
    assert outputs["login_view"]["visible"] is True and outputs["app_view"]["visible"] is False
    with pytest.raises(gr.Error, match="log in"):
        app.history(session, 1)
    assert ledger.get_balance(session.user_id).balance == 10


def test_log_out_everywhere_and_a_password_change_end_every_session(app):
    from gemma_chat.accounts import admin

    laptop, phone = sign_up(app), signed_in_request(app.settings, "alice", register=False)
    assert sessions.revoke_user_sessions(laptop.user_id) == 2
    for request in (laptop, phone):
        assert app.restore(request)["login_view"]["visible"] is True
    laptop, phone = (signed_in_request(app.settings, "alice", register=False) for _ in range(2))
    admin.reset_password(app.settings, None, "alice", "a new long password")
    for request in (laptop, phone):
        assert app.restore(request)["login_view"]["visible"] is True


def test_stop_ends_a_streaming_answer_and_charges_what_was_shown(chat_settings, demo_engine):
    long_answers = dataclasses.replace(
        chat_settings, tiers={k: dataclasses.replace(t, max_tokens=400) for k, t in chat_settings.tiers.items()}
    )
    app = ChatApp(long_answers, demo_engine)
    session = sign_up(app)
    outputs = []
    for output in app.send(session, "mini", "Write a long story about the sea, the wind and a lighthouse keeper.", [], []):
        outputs.append(output)
        if len(outputs) == 3:  # text is on screen: the user presses Stop
            app.stop(session)
    shown = shown_after(outputs)
    assert "Stopped." in shown["chatbot"][-1]["content"] and "Balance: 9 credits" in shown["balance"]
    assert Interaction.get().status == "stopped"
    assert len(outputs) < 50  # it really stopped, well before 400 tokens


def test_the_answer_footer_shows_tokens_speed_and_time_above_model_and_price(app):
    chatbot = shown_after(chat(app, sign_up(app)))["chatbot"]
    row = Interaction.get()
    answer, bracketed = chatbot[-1]["content"].rsplit("\n\n", 1)
    # Between the marks the page's copy leaves out (session.py), in the element the page draws small.
    assert bracketed.startswith(FOOTER_OPEN) and bracketed.endswith(FOOTER_CLOSE) and FOOTER_MARK not in answer
    figures, footer = bracketed.removeprefix(FOOTER_OPEN).removesuffix(FOOTER_CLOSE).split("\n")
    seconds = row.duration_ms / 1000
    assert figures == f"{row.completion_tokens} tokens · {row.completion_tokens / seconds:.1f} tokens/s · {seconds:.1f} s"
    assert footer == "— Gemma 3 270M (bundled demo) for mini · 1 credit"


def test_markdown_in_an_answer_is_kept_for_the_renderer_and_html_is_escaped(app, demo_engine):
    from reliability.test_hostile_input import EchoEngine

    app.engine = EchoEngine(demo_engine)
    text = "**bold** `a<b` <img src=x onerror=alert(1)>"
    chatbot = shown_after(chat(app, sign_up(app), message=text))["chatbot"]
    assert chatbot[0]["content"] == "**bold** `a<b` &lt;img src=x onerror=alert(1)&gt;"
    assert chatbot[1]["content"].startswith("**bold** `a<b` &lt;img src=x onerror=alert(1)&gt;\n\n")


def test_a_chatbot_that_is_not_a_list_is_started_afresh(app, demo_engine):
    """Found by tests/test_ui_replace_fuzz.py: a forged event's chatbot (a number, say) raised TypeError."""
    from reliability.test_hostile_input import EchoEngine

    app.engine = EchoEngine(demo_engine)
    session = sign_up(app)
    for forged in (5, "text", {"role": "user"}, None):
        shown = shown_after(app.send(session, "mini", "hi", forged, []))
        assert [bubble["role"] for bubble in shown["chatbot"]] == ["user", "assistant"] and shown["message"] == ""
