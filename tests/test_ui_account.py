"""The Account tab's API keys, through its callbacks as Gradio calls them (no model needed)."""

from __future__ import annotations

import gradio as gr
import pytest

from conftest import browser_request, signed_in_request
from gemma_chat.accounts import keys
from gemma_chat.ui import ChatApp
from gemma_chat.ui.api_keys import build_api_keys_section


@pytest.fixture
def tab(settings, database):
    app = ChatApp(settings, engine=None)
    with gr.Blocks():
        with gr.Tabs():
            with gr.Tab("Account") as account:
                return build_api_keys_section(app, account)


def test_create_shows_the_key_once_lists_it_and_revoke_stops_it(settings, tab):
    alice = signed_in_request(settings, "alice")
    created = tab.create(alice, "my editor")
    plaintext = created[tab.shown_key]["value"]
    assert plaintext.startswith("gck_") and keys.resolve_key(plaintext).id == alice.user_id
    assert "shown only once" in created[tab.message]
    assert created[tab.table].values.tolist()[0][:2] == ["my editor", plaintext[:12] + "…"]
    assert plaintext not in tab.show(alice)[tab.table].to_string()  # the list never shows it again
    (choice,) = created[tab.revoke_choice]["choices"]

    bob = signed_in_request(settings, "bob")
    assert tab.revoke(bob, choice[1])[tab.message].startswith("⚠")  # not bob's key
    assert keys.resolve_key(plaintext) is not None

    revoked = tab.revoke(alice, choice[1])
    assert "stops working at once" in revoked[tab.message]
    assert keys.resolve_key(plaintext) is None and revoked[tab.table].empty


def test_the_tab_needs_a_session_and_a_sane_name(settings, tab):
    assert tab.create(browser_request(None), "x")[tab.message] == "⚠ Please log in."
    assert tab.show(browser_request(None))[tab.message] == "⚠ Please log in."
    alice = signed_in_request(settings, "alice")
    assert tab.create(alice, "x" * 100)[tab.message].startswith("⚠")
    assert tab.revoke(alice, None)[tab.message] == "⚠ Choose a key to revoke."


def test_export_all_chats_holds_every_chat_of_the_user_and_no_one_elses(settings, database):
    import json

    from gemma_chat.chats import conversations

    app = ChatApp(settings, engine=None)
    alice, bob = signed_in_request(settings, "alice"), signed_in_request(settings, "bob")
    for n in range(3):
        conversations.create_conversation(alice.user_id, f"alice chat {n}")
    conversations.create_conversation(bob.user_id, "bob's secret")
    shown = app.export_all_chats(alice)
    payload = json.loads(shown["download"])
    data = json.loads(payload["text"])
    assert payload["type"] == "application/json" and data["format"] == "gemma-chat.chats/1"
    assert sorted(chat["title"] for chat in data["chats"]) == ["alice chat 0", "alice chat 1", "alice chat 2"]
    with pytest.raises(Exception, match="log in"):
        app.export_all_chats(browser_request(None))
