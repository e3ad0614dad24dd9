"""Chats: the migration from the previous schema, the services, and the Chats tab's callbacks
with the real bundled model (a recording wrapper shows the messages the engine was given)."""

from __future__ import annotations

import html
import re

import gradio as gr
import pytest
from markdown_it import MarkdownIt

from conftest import browser_request, shown_after, signed_in_request
from gemma_chat.chats import conversations
from gemma_chat.store import db
from gemma_chat.store.db import Conversation, Interaction
from gemma_chat.ops.reports import Reports
from gemma_chat.ui import ChatApp
from gemma_chat.ui.markup import FOOTER_CLOSE

pytestmark = pytest.mark.both_engines


def test_old_interactions_become_one_earlier_chats_conversation_per_user(tmp_path):
    path = tmp_path / "old.db"
    db.open_database(path, migrate=False)
    db.apply_migrations(db.MIGRATIONS[:3])
    run = db.database.execute_sql
    for user_id, name in ((1, "alice"), (2, "bob"), (3, "carol")):
        run("INSERT INTO users (id, username, password_hash, balance, created_at) VALUES (?, ?, 'x', 0, '2026-01-01')", (user_id, name))
    for n, (user_id, day) in enumerate([(1, "2026-01-02"), (1, "2026-01-05"), (2, "2026-01-03")]):
        run(
            "INSERT INTO interactions (request_id, user_id, tier, model_name, prompt, answer, status, created_at) "
            "VALUES (?, ?, 'mini', 'm', ?, 'a', 'ok', ?)",
            (f"r{n}", user_id, f"q{n}", day),
        )
    db.close_database()
    db.open_database(path)  # the next start-up applies 0004
    try:
        chats = {(c.user_id, c.title, str(c.created_at)[:10], str(c.updated_at)[:10]) for c in Conversation.select()}
        assert chats == {(1, "Earlier chats", "2026-01-02", "2026-01-05"), (2, "Earlier chats", "2026-01-03", "2026-01-03")}
        assert Interaction.select().where(Interaction.conversation.is_null()).count() == 0
        alice_chat = Conversation.get(Conversation.user == 1).id
        assert [t.prompt for t in conversations.conversation_turns(1, alice_chat)] == ["q0", "q1"]
        assert db.check_integrity() == []
    finally:
        db.close_database()


class RecordingEngine:
    """The real engine, remembering the messages of every generation it is asked for."""

    def __init__(self, engine):
        self.engine = engine
        self.calls: list[list[dict]] = []

    def tiers(self):
        return self.engine.tiers()

    def generate(self, tier, messages, *, stop=None, sampling=None):
        self.calls.append([dict(m) for m in messages])
        return self.engine.generate(tier, messages, stop=stop, sampling=sampling)


@pytest.fixture
def app(chat_settings, demo_engine):
    app = ChatApp(chat_settings, RecordingEngine(demo_engine))
    app.build()
    return app


def send(app, session, message, tier="mini", system_prompt=None):
    """What the page shows after one Send (its updates merged)."""
    return shown_after(app.send(session, tier, message, [], [], system_prompt))


def listed(shown: dict) -> list[tuple[int, str]]:
    """The sidebar's chats (id, title), top to bottom, from its HTML."""
    return [(int(id), html.unescape(title)) for id, title in re.findall(r'href="\?chat=(\d+)"[^>]* title="([^"]*)"', shown["chat_list"])]


def test_a_chat_continues_with_its_context_and_survives_a_reload(app):
    session = signed_in_request(app.settings, "alice")
    send(app, session, "My name is Ada.")
    send(app, session, "What is my name?")
    first_answer = Interaction.get(Interaction.prompt == "My name is Ada.").answer
    assert app.engine.calls[-1] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": first_answer},
        {"role": "user", "content": "What is my name?"},
    ]
    chatbot = app.restore(session)["chatbot"]  # a reload: the load event shows the open chat again
    assert [m["content"] for m in chatbot[::2]] == ["My name is Ada.", "What is my name?"]
    assert chatbot[1]["content"].endswith("— Gemma 3 270M (bundled demo) for mini · 1 credit" + FOOTER_CLOSE)
    (chat,) = Conversation.select()
    assert chat.title == "My name is Ada."


def test_new_chat_starts_without_context_and_opening_an_old_chat_continues_it(app):
    session = signed_in_request(app.settings, "alice")
    send(app, session, "First chat, first message.")
    app.new_chat(session)
    assert app.restore(session)["chatbot"] == []
    send(app, session, "Second chat.")
    assert app.engine.calls[-1] == [{"role": "user", "content": "Second chat."}]

    chats = listed(app.search_chats(session, ""))
    assert [title for _, title in chats] == ["Second chat.", "First chat, first message."]  # newest first
    opened = app.chat_request(session, f"open:{chats[1][0]}:1", "")  # one click on its row
    assert opened["chatbot"][0]["content"] == "First chat, first message." and opened["chat_id"] == str(chats[1][0])
    assert 'class="gc-chat gc-open"><a class="gc-chat-link" href="?chat=%d"' % chats[1][0] in opened["chat_list"]
    send(app, session, "And a follow-up.")
    assert [m["content"] for m in app.engine.calls[-1][::2]] == ["First chat, first message.", "And a follow-up."]
    assert listed(app.search_chats(session, ""))[0][1] == "First chat, first message."  # used last: on top


def test_rename_search_and_delete_touch_only_ones_own_chats_and_keep_the_report(app):
    alice = signed_in_request(app.settings, "alice")
    bob = signed_in_request(app.settings, "bob")
    send(app, alice, "Tell me about whales.")
    send(app, bob, "Bob's secret question.")
    ((whales, _),) = listed(app.search_chats(alice, ""))
    asked = app.chat_request(alice, f"rename:{whales}:1", "")
    assert asked["rename_row"]["visible"] is True and asked["rename_title"] == "Tell me about whales."
    selected = asked["target_chat"]
    assert app.rename_chat(alice, selected, "   ", "")["sidebar_notice"] == "⚠ Enter a title for the chat."  # inline
    renamed = app.rename_chat(alice, selected, "  Whales   and me ", "")
    assert renamed["sidebar_notice"] == "Renamed to “Whales and me”." and listed(renamed) == [(whales, "Whales and me")]
    assert renamed["rename_row"]["visible"] is False
    assert len(listed(app.search_chats(alice, "whales"))) == 1
    assert len(listed(app.search_chats(alice, "Tell me about"))) == 1  # the messages are searched too
    assert "No chats match." in app.search_chats(alice, "secret")["chat_list"]  # not bob's
    assert listed(app.search_chats(alice, "%")) == []  # LIKE wildcards are text

    # bob's page cannot name alice's chat: by id it is not found, and her page State is not his
    bobs_try = app.chat_request(bob, f"open:{whales}:2", "")
    assert bobs_try["sidebar_notice"] == "⚠ That chat was not found." and "chatbot" not in bobs_try
    assert app.owned_by(bob.user_id, selected) == []
    forged = {"user_id": bob.user_id, "rows": app.owned_by(alice.user_id, selected)}
    assert app.rename_chat(bob, forged, "mine", "")["sidebar_notice"] == "⚠ That chat was not found."
    assert app.chat_request(bob, "open:1000000000000000000000000000000", "")["sidebar_notice"] == "⚠ That chat was not found."

    # A title is shown as typed in the confirmation, which a gr.Markdown renders (issue 21, H).
    trap = "![x](http://127.0.0.1:9/x.png) <img src=x>"
    rendered = MarkdownIt("commonmark", {"html": True}).render(app.rename_chat(alice, selected, trap, "")["sidebar_notice"])
    assert "<img" not in rendered and "<a " not in rendered and "x.png" in rendered
    asked = app.chat_request(alice, f"delete:{whales}:3", "")  # and in the question before a delete
    rendered = MarkdownIt("commonmark", {"html": True}).render(asked["delete_question"])
    assert "<img" not in rendered and "<a " not in rendered and "x.png" in rendered
    app.rename_chat(alice, selected, "Whales and me", "")

    report = Reports().full()
    asked = app.chat_request(alice, f"delete:{whales}:3", "")
    assert asked["delete_row"]["visible"] is True and asked["delete_question"].startswith("Delete “Whales and me”?")
    assert listed(app.search_chats(alice, "")) == [(whales, "Whales and me")]  # asking deleted nothing
    deleted = app.delete_chat(alice, asked["target_chat"], "")
    assert deleted["sidebar_notice"] == "Deleted “Whales and me”." and deleted["chatbot"] == []  # it was open
    assert deleted["chat_id"] == "" and listed(deleted) == [] and "No chats yet" in deleted["chat_list"]
    assert app.restore(alice)["chatbot"] == []  # a reload shows a new chat
    assert Reports().full() == report  # the admin's numbers are unchanged
    assert Interaction.select().count() == 2 and Conversation.select().count() == 2  # hidden, not deleted


def test_chat_list_callbacks_need_a_session(app):
    from conftest import browser_request

    nobody = browser_request(None)
    for call in (
        lambda: app.search_chats(nobody, ""),
        lambda: app.chat_request(nobody, "open:1", ""),
        lambda: app.rename_chat(nobody, [], "x", ""),
        lambda: app.delete_chat(nobody, [], ""),
        lambda: app.new_chat_from_list(nobody, ""),
    ):
        with pytest.raises(Exception, match="log in"):
            call()


def test_a_password_change_needs_the_current_password_and_ends_only_the_other_sessions(app):
    from gemma_chat.accounts import auth, sessions

    laptop = signed_in_request(app.settings, "alice")
    phone = signed_in_request(app.settings, "alice", register=False)
    refused = app.change_password(laptop, "wrong password", "a new long password")
    assert refused == {"current_password": "", "new_password": "", "account_message": "⚠ The current password is wrong."}
    assert app.change_password(laptop, "long enough pw", "short")["account_message"].startswith("⚠ A password needs at least")
    assert app.change_password(browser_request_none(), "x", "y")["account_message"] == "⚠ Please log in."
    done = app.change_password(laptop, "long enough pw", "a new long password")
    assert done["account_message"] == "Password changed. 1 other session signed out."
    assert sessions.resolve_session(app.settings, laptop.token) is not None
    assert sessions.resolve_session(app.settings, phone.token) is None
    assert auth.login(app.settings, "alice", "a new long password").username == "alice"


def browser_request_none():
    from conftest import browser_request

    return browser_request(None)


def offered(app, session, tier: str = "mini") -> dict:
    """Regenerate's and Edit's labels as the page shows them, each with whether it can be pressed."""
    return {name: (update["value"], update["interactive"]) for name, update in app.action_state(session, tier).items()}


def told(updates, message: str) -> bool:
    """A refused Regenerate or edit: one update, saying why beside the box; the chat, box and balance stay."""
    return len(updates) == 1 and message in updates[0]["chat_notice"] and not {"chatbot", "message", "balance"} & set(updates[0])


def test_regenerate_answers_the_same_prompt_again_without_the_old_answer(app):
    session = signed_in_request(app.settings, "alice")
    nothing_to_replace = {"regenerate_button": ("Regenerate (3 credits)", False), "edit_button": ("Edit last message", False)}
    assert offered(app, session, "pro") == nothing_to_replace
    assert told(list(app.regenerate(session, "mini")), "no answer to regenerate")  # sent all the same: refused
    send(app, session, "My name is Ada.")
    send(app, session, "Name a colour.")
    assert offered(app, session, "pro") == {"regenerate_button": ("Regenerate (3 credits)", True), "edit_button": ("Edit last message", True)}
    old = Interaction.select().order_by(Interaction.id.desc()).get()
    regenerated = list(app.regenerate(session, "mini"))
    shown = shown_after(regenerated)
    chatbot, balance = shown["chatbot"], shown["balance"]
    new = Interaction.select().order_by(Interaction.id.desc()).get()
    assert (new.prompt, new.replaces_id, new.credits_charged) == ("Name a colour.", old.id, 1)
    first_answer = Interaction.get(Interaction.prompt == "My name is Ada.").answer
    assert app.engine.calls[-1] == [  # the same prompt again; the old answer is not context
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": first_answer},
        {"role": "user", "content": "Name a colour."},
    ]
    assert [m["content"] for m in chatbot[::2]] == ["My name is Ada.", "Name a colour."]  # one answer shown
    assert "Balance: 7 credits" in balance and all(u.get("message", gr.update()) == gr.update() for u in regenerated)  # a draft stays
    assert app.restore(session)["chatbot"][3]["content"].startswith(new.answer)  # a reload shows the replacement
    send(app, session, "Thanks.")
    assert app.engine.calls[-1][3] == {"role": "assistant", "content": new.answer}
    assert len(app.engine.calls[-1]) == 5


def test_edit_last_message_puts_it_back_and_send_replaces_the_turn(app):
    session = signed_in_request(app.settings, "alice")
    assert app.edit_last(session) == {"chat_notice": "⚠ There is no message to edit yet."}
    send(app, session, "Name a fruit.")
    old = Interaction.select().order_by(Interaction.id.desc()).get()
    edited = app.edit_last(session)
    assert edited == {"message": "Name a fruit.", "edit_button": "Cancel edit", "chat_notice": ""}
    assert app.edit_last(session) == {"edit_button": "Edit last message", "chat_notice": ""}  # pressed again: cancelled
    app.edit_last(session)
    shown = send(app, session, "Name a vegetable.")
    chatbot, box = shown["chatbot"], shown["message"]
    new = Interaction.select().order_by(Interaction.id.desc()).get()
    assert (new.prompt, new.replaces_id) == ("Name a vegetable.", old.id) and box == ""
    assert [m["content"] for m in chatbot[::2]] == ["Name a vegetable."]
    assert app.engine.calls[-1] == [{"role": "user", "content": "Name a vegetable."}]
    assert offered(app, session)["edit_button"] == ("Edit last message", True)
    send(app, session, "And a nut?")  # no edit pending: a new turn
    assert Interaction.select().order_by(Interaction.id.desc()).get().replaces_id is None
    opened = [t.prompt for t in conversations.conversation_turns(app.current_user(session).id, new.conversation_id)]
    assert opened == ["Name a vegetable.", "And a nut?"]


def test_replacing_is_refused_without_credits_or_while_an_answer_streams(app):
    from gemma_chat.billing import ledger

    session = signed_in_request(app.settings, "alice")
    send(app, session, "Name a fruit.")
    user_id = app.current_user(session).id
    ledger.grant_credits(user_id, -9, actor_id=None)
    rows = Interaction.select().count()
    assert offered(app, session) == {"regenerate_button": ("Regenerate (1 credit)", False), "edit_button": ("Edit last message", True)}
    refused = list(app.regenerate(session, "mini"))  # sent all the same
    assert len(refused) == 1 and "Not enough credits" in refused[0]["chat_notice"] and "chatbot" not in refused[0]
    app.edit_last(session)
    refused = list(app.send(session, "mini", "Name a nut.", [], []))  # an edit refused: the text stays in the box
    assert len(refused) == 1 and "Not enough credits" in refused[0]["chat_notice"] and "message" not in refused[0]
    assert offered(app, session)["edit_button"] == ("Cancel edit", True)  # still editing: nothing changed
    assert ledger.get_balance(user_id).balance == 0
    assert [t.prompt for t in conversations.conversation_turns(user_id, Interaction.get().conversation_id)] == ["Name a fruit."]
    assert Interaction.select().where(Interaction.status != "refused").count() == rows
    app.edit_last(session)  # cancel

    ledger.grant_credits(user_id, 5, actor_id=None)
    streaming = app.send(session, "mini", "Tell me about the sea.", [], [])
    assert "regenerate_button" in next(streaming)  # held: the answer is on its way, and the page is told
    assert offered(app, session) == {"regenerate_button": ("Regenerate (1 credit)", False), "edit_button": ("Edit last message", False)}
    assert told(list(app.regenerate(session, "mini")), "Wait for the answer")
    assert app.edit_last(session) == {"chat_notice": "⚠ Wait for the answer to finish (or press Stop) first."}
    streaming.close()
    assert ledger.get_balance(user_id).balance == 5  # closed before any text: released


def test_an_edit_ends_when_another_chat_is_opened(app):
    session = signed_in_request(app.settings, "alice")
    send(app, session, "Name a fruit.")
    app.edit_last(session)
    app.new_chat(session)
    assert offered(app, session)["edit_button"] == ("Edit last message", False)  # after New chat: nothing to edit
    send(app, session, "Name a tree.")
    assert [row.replaces_id for row in Interaction.select()] == [None, None]
    assert [row.title for row in Conversation.select()] == ["Name a fruit.", "Name a tree."]


# --- issue 19: nothing typed is lost, per-chat settings, a chat's URL ------------------------------


def test_a_message_refused_for_credits_stays_in_the_chat_and_retry_sends_that_message(app):
    from gemma_chat.billing import ledger

    session = signed_in_request(app.settings, "alice")
    send(app, session, "Name a fruit.")
    ledger.grant_credits(session.user_id, -9, actor_id=None)  # nothing left
    refused = send(app, session, "Name a planet.")
    assert "Not enough credits" in refused["chat_notice"] and refused["message"] == ""  # the box is empty: the text is in the chat
    assert refused["chatbot"][-2]["content"] == "Name a planet." and "Not sent" in refused["chatbot"][-1]["content"]
    reloaded = app.restore(session)["chatbot"]  # a reload keeps it, marked refused
    assert [m["content"] for m in reloaded[::2]] == ["Name a fruit.", "Name a planet."] and "Not sent" in reloaded[-1]["content"]
    assert "does not pay" in app.restore(session)["chat_notice"]  # and says the balance is too low

    ledger.grant_credits(session.user_id, 5, actor_id=None)  # topped up
    calls = len(app.engine.calls)
    retried = shown_after(app.regenerate(session, "mini"))  # ↻ on the refused message
    assert app.engine.calls[calls][-1] == {"role": "user", "content": "Name a planet."}  # that message, not the one before
    assert [m["content"] for m in retried["chatbot"][::2]] == ["Name a fruit.", "Name a planet."]
    assert "Not sent" not in retried["chatbot"][-1]["content"]
    assert ledger.get_balance(session.user_id).balance == 4  # one answer charged, the refusal never
    reloaded = app.restore(session)["chatbot"]
    assert len(reloaded) == 4 and "Not sent" not in reloaded[-1]["content"]


def test_a_refused_first_message_starts_its_chat_so_a_reload_still_shows_it(app):
    from gemma_chat.billing import ledger

    session = signed_in_request(app.settings, "alice")
    ledger.grant_credits(session.user_id, -10, actor_id=None)
    refused = send(app, session, "Hello there")
    assert refused["chat_id"] and listed(app.search_chats(session, "")) == [(int(refused["chat_id"]), "Hello there")]
    assert [m["content"] for m in app.restore(session)["chatbot"]][0] == "Hello there"


def test_each_chat_keeps_its_system_prompt_and_model_and_the_prompt_reaches_the_model(app):
    session = signed_in_request(app.settings, "alice")
    app.save_default_system_prompt(session, "Answer in French.")
    assert app.new_chat_from_list(session, "")["system_prompt"] == "Answer in French."  # new chats start with it
    first = send(app, session, "Name a colour.", tier="pro", system_prompt="Answer like a pirate.")
    assert app.engine.calls[-1] == [{"role": "user", "content": "Answer like a pirate.\n\nName a colour."}]
    app.new_chat_from_list(session, "")
    send(app, session, "Name a fish.", system_prompt="")
    assert app.engine.calls[-1] == [{"role": "user", "content": "Name a fish."}]

    reopened = app.restore(browser_request(session.token, query=f"chat={first['chat_id']}"))  # ?chat=ID: the URL's chat
    assert reopened["chat_id"] == first["chat_id"] and reopened["chatbot"][0]["content"] == "Name a colour."
    assert reopened["system_prompt"] == "Answer like a pirate." and reopened["model"]["value"] == "pro"
    app.save_system_prompt(session, "pro", "Answer like a poet.")
    send(app, session, "And a flower?", tier="pro", system_prompt="Answer like a poet.")
    assert app.engine.calls[-1][-1] == {"role": "user", "content": "Answer like a poet.\n\nAnd a flower?"}
    assert app.engine.calls[-1][0] == {"role": "user", "content": "Name a colour."}  # earlier turns as they were asked
    assert app.restore(session)["system_prompt"] == "Answer like a poet."
    too_long = send(app, session, "Hi", system_prompt="x" * 4001)
    assert too_long["chat_notice"] == "⚠ A system prompt has at most 4,000 characters." and "message" not in too_long


def test_a_url_naming_another_users_chat_opens_nothing_of_theirs(app):
    alice, bob = (signed_in_request(app.settings, name) for name in ("alice", "bob"))
    secret = send(app, bob, "Bob's secret question.")
    shown = app.restore(browser_request(alice.token, query=f"chat={secret['chat_id']}"))
    assert shown["chatbot"] == [] and shown["chat_id"] == ""
    for junk in ("chat=abc", "chat=-1", "chat=" + "9" * 40, "chat=0"):
        assert app.restore(browser_request(alice.token, query=junk))["chat_id"] == ""


def test_an_empty_answer_says_so_after_a_reload_and_in_history(app):
    from gemma_chat.backends.base import GenerationResult

    tiers = app.engine.tiers()

    class Silent:  # a model that answers nothing
        def tiers(self):
            return tiers

        def generate(self, tier, messages, *, stop=None, sampling=None):
            yield GenerationResult("", 1, 0, "stop", 0, 1, "silent")

    app.engine = Silent()
    session = signed_in_request(app.settings, "alice")
    send(app, session, "Say nothing.")
    note = "The model returned an empty answer. Nothing was charged."
    assert note in app.restore(session)["chatbot"][-1]["content"]
    assert list(app.history(session, 1)["history_table"]["Status"]) == ["empty answer"]
