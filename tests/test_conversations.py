"""Chats: the migration from the previous schema, the services, and the Chats tab's callbacks
with the real bundled model (a recording wrapper shows the messages the engine was given)."""

from __future__ import annotations

import gradio as gr
import pytest
from markdown_it import MarkdownIt

from conftest import signed_in_request
from gemma_chat import conversations
from gemma_chat.store import db
from gemma_chat.store.db import Conversation, Interaction
from gemma_chat.reports import Reports
from gemma_chat.ui import ChatApp

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


def send(app, session, message, tier="mini"):
    return list(app.send(session, tier, message, [], []))[-1]


def select(index) -> gr.SelectData:
    return gr.SelectData(None, {"index": index, "value": None})


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
    assert chatbot[1]["content"].endswith("— Gemma 3 270M (bundled demo) for mini · 1 credit")
    (chat,) = Conversation.select()
    assert chat.title == "My name is Ada."


def test_new_chat_starts_without_context_and_opening_an_old_chat_continues_it(app):
    session = signed_in_request(app.settings, "alice")
    send(app, session, "First chat, first message.")
    app.new_chat(session)
    assert app.restore(session)["chatbot"] == []
    send(app, session, "Second chat.")
    assert app.engine.calls[-1] == [{"role": "user", "content": "Second chat."}]

    listing = app.chats_page(session, 1, "")
    assert list(listing["chats_table"]["Chat"]) == ["Second chat.", "First chat, first message."]  # newest first
    picked = app.select_chat(session, listing["chats_ids"], select([1, 0]))
    assert picked["chat_title"] == "First chat, first message."
    opened = app.open_chat(session, picked["selected_chat"])
    assert opened["chatbot"][0]["content"] == "First chat, first message."
    send(app, session, "And a follow-up.")
    assert [m["content"] for m in app.engine.calls[-1][::2]] == ["First chat, first message.", "And a follow-up."]
    assert app.chats_page(session, 1, "")["chats_table"].iloc[0]["Chat"] == "First chat, first message."  # used last


def test_rename_search_and_delete_touch_only_ones_own_chats_and_keep_the_report(app):
    alice = signed_in_request(app.settings, "alice")
    bob = signed_in_request(app.settings, "bob")
    send(app, alice, "Tell me about whales.")
    send(app, bob, "Bob's secret question.")
    listing = app.chats_page(alice, 1, "")
    selected = app.select_chat(alice, listing["chats_ids"], select([0, 0]))["selected_chat"]
    renamed = app.rename_chat(alice, 1, "", selected, "  Whales   and me ")
    assert renamed["chats_message"] == "Renamed to “Whales and me”." and renamed["chats_table"].iloc[0]["Chat"] == "Whales and me"
    assert len(app.chats_search(alice, "whales")["chats_table"]) == 1
    assert len(app.chats_search(alice, "Tell me about")["chats_table"]) == 1  # the messages are searched too
    assert "no chats found" in app.chats_search(alice, "secret")["chats_label"]  # not bob's
    assert len(app.chats_search(alice, "%")["chats_table"]) == 0  # LIKE wildcards are text

    # bob's page State cannot name alice's chat, and a forged id is not found
    assert app.owned_by(bob.user_id, selected) == []
    with pytest.raises(conversations.ConversationNotFoundError):
        app.rename_chat(bob, 1, "", {"user_id": bob.user_id, "rows": app.owned_by(alice.user_id, selected)}, "mine")
    with pytest.raises(conversations.ConversationNotFoundError):
        app.open_chat(bob, {"user_id": bob.user_id, "rows": [10**30]})

    # A title is shown as typed in the confirmation, which a gr.Markdown renders (issue 21, H).
    trap = "![x](http://127.0.0.1:9/x.png) <img src=x>"
    rendered = MarkdownIt("commonmark", {"html": True}).render(app.rename_chat(alice, 1, "", selected, trap)["chats_message"])
    assert "<img" not in rendered and "<a " not in rendered and "x.png" in rendered
    app.rename_chat(alice, 1, "", selected, "Whales and me")

    report = Reports().full()
    deleted = app.delete_chat(alice, 1, "", selected)
    assert deleted["chats_message"] == "Deleted “Whales and me”." and deleted["chatbot"] == []  # it was open
    assert len(deleted["chats_table"]) == 0 and "no chats yet" in deleted["chats_label"]
    assert app.restore(alice)["chatbot"] == []  # a reload shows a new chat
    assert Reports().full() == report  # the admin's numbers are unchanged
    assert Interaction.select().count() == 2 and Conversation.select().count() == 2  # hidden, not deleted


def test_chat_list_callbacks_need_a_session(app):
    from conftest import browser_request

    nobody = browser_request(None)
    for call in (
        lambda: app.chats_page(nobody, 1, ""),
        lambda: app.open_chat(nobody, []),
        lambda: app.rename_chat(nobody, 1, "", [], "x"),
        lambda: app.delete_chat(nobody, 1, "", []),
    ):
        with pytest.raises(Exception, match="log in"):
            call()


def test_a_password_change_needs_the_current_password_and_ends_only_the_other_sessions(app):
    from gemma_chat import auth, sessions

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


NOTHING_CHANGED = (gr.update(),) * 4  # a refused Regenerate or edit: the chat, box and balance stay


def test_regenerate_answers_the_same_prompt_again_without_the_old_answer(app):
    session = signed_in_request(app.settings, "alice")
    assert app.regenerate_label(session, "pro") == {"regenerate_button": "Regenerate (3 credits)"}
    with pytest.warns(UserWarning, match="no answer to regenerate"):
        assert list(app.regenerate(session, "mini")) == [NOTHING_CHANGED]
    send(app, session, "My name is Ada.")
    send(app, session, "Name a colour.")
    old = Interaction.select().order_by(Interaction.id.desc()).get()
    chatbot, box, balance, context = list(app.regenerate(session, "mini"))[-1]
    new = Interaction.select().order_by(Interaction.id.desc()).get()
    assert (new.prompt, new.replaces_id, new.credits_charged) == ("Name a colour.", old.id, 1)
    first_answer = Interaction.get(Interaction.prompt == "My name is Ada.").answer
    assert app.engine.calls[-1] == [  # the same prompt again; the old answer is not context
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": first_answer},
        {"role": "user", "content": "Name a colour."},
    ]
    assert [m["content"] for m in chatbot[::2]] == ["My name is Ada.", "Name a colour."]  # one answer shown
    assert "Balance: 7 credits" in balance and box["__type__"] == "update"  # a draft in the box stays
    assert app.restore(session)["chatbot"][3]["content"].startswith(new.answer)  # a reload shows the replacement
    send(app, session, "Thanks.")
    assert app.engine.calls[-1][3] == {"role": "assistant", "content": new.answer}
    assert len(app.engine.calls[-1]) == 5


def test_edit_last_message_puts_it_back_and_send_replaces_the_turn(app):
    session = signed_in_request(app.settings, "alice")
    with pytest.warns(UserWarning, match="no message to edit"):
        assert app.edit_last(session) == {}
    send(app, session, "Name a fruit.")
    old = Interaction.select().order_by(Interaction.id.desc()).get()
    edited = app.edit_last(session)
    assert edited == {"message": "Name a fruit.", "edit_button": "Cancel edit"}
    assert app.edit_last(session) == {"edit_button": "Edit last message"}  # pressed again: cancelled
    app.edit_last(session)
    chatbot, box, _, _ = send(app, session, "Name a vegetable.")
    new = Interaction.select().order_by(Interaction.id.desc()).get()
    assert (new.prompt, new.replaces_id) == ("Name a vegetable.", old.id) and box == ""
    assert [m["content"] for m in chatbot[::2]] == ["Name a vegetable."]
    assert app.engine.calls[-1] == [{"role": "user", "content": "Name a vegetable."}]
    assert app.edit_state(session) == {"edit_button": "Edit last message"}
    send(app, session, "And a nut?")  # no edit pending: a new turn
    assert Interaction.select().order_by(Interaction.id.desc()).get().replaces_id is None
    opened = [t.prompt for t in conversations.conversation_turns(app.current_user(session).id, new.conversation_id)]
    assert opened == ["Name a vegetable.", "And a nut?"]


def test_replacing_is_refused_without_credits_or_while_an_answer_streams(app):
    from gemma_chat import ledger

    session = signed_in_request(app.settings, "alice")
    send(app, session, "Name a fruit.")
    user_id = app.current_user(session).id
    ledger.grant_credits(user_id, -9, actor_id=None)
    rows = Interaction.select().count()
    with pytest.warns(UserWarning, match="Not enough credits"):
        assert list(app.regenerate(session, "mini")) == [NOTHING_CHANGED]
    app.edit_last(session)
    with pytest.warns(UserWarning, match="Not enough credits"):
        assert list(app.send(session, "mini", "Name a nut.", [], [])) == [NOTHING_CHANGED]
    assert app.edit_state(session) == {"edit_button": "Cancel edit"}  # still editing: nothing changed
    assert ledger.get_balance(user_id).balance == 0
    assert [t.prompt for t in conversations.conversation_turns(user_id, Interaction.get().conversation_id)] == ["Name a fruit."]
    assert Interaction.select().where(Interaction.status != "refused").count() == rows
    app.edit_last(session)  # cancel

    ledger.grant_credits(user_id, 5, actor_id=None)
    streaming = app.send(session, "mini", "Tell me about the sea.", [], [])
    next(streaming)  # held: the answer is on its way
    with pytest.warns(UserWarning, match="Wait for the answer"):
        assert list(app.regenerate(session, "mini")) == [NOTHING_CHANGED]
    with pytest.warns(UserWarning, match="Wait for the answer"):
        assert app.edit_last(session) == {}
    streaming.close()
    assert ledger.get_balance(user_id).balance == 5  # closed before any text: released


def test_an_edit_ends_when_another_chat_is_opened(app):
    session = signed_in_request(app.settings, "alice")
    send(app, session, "Name a fruit.")
    app.edit_last(session)
    app.new_chat(session)
    assert app.edit_state(session) == {"edit_button": "Edit last message"}  # the label the page gets after New chat
    send(app, session, "Name a tree.")
    assert [row.replaces_id for row in Interaction.select()] == [None, None]
    assert [row.title for row in Conversation.select()] == ["Name a fruit.", "Name a tree."]
