"""A chat's settings and the chat's own edit against anything a client can send (issue 19: ≥500 examples each).

The system prompt box, the model picker, the user's default prompt and the Chatbot's edit event hand
their callbacks whatever a page (or a script reusing its session_hash) posted. Each must answer — a
value to fix is a notice beside the field, never a popup or another exception — and never change
another user's chat or default.
"""

from __future__ import annotations

import gradio as gr
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import fuzz_examples, shown_after, signed_in_request
from gemma_chat.chats import conversations
from gemma_chat.store.db import Conversation, User
from gemma_chat.ui import ChatApp

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=fuzz_examples(500), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=300),
    st.sampled_from(["", "x" * 4001, "a\x00b", "\ud800", "mini", "pro"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


class NoEngine:
    """Tiers only: these callbacks never generate (an edit that would is refused before it runs)."""

    def __init__(self, demo_engine):
        self.statuses = demo_engine.tiers()

    def tiers(self):
        return self.statuses


@pytest.fixture
def world(chat_settings, demo_engine):
    app = ChatApp(chat_settings, NoEngine(demo_engine))
    alice, bob = (signed_in_request(chat_settings, name) for name in ("alice", "bob"))
    alice_chat = conversations.create_conversation(alice.user_id, "alice's chat")
    bob_chat = conversations.create_conversation(bob.user_id, "bob's chat")
    conversations.save_chat_settings(bob.user_id, bob_chat, "pro", "Bob's own prompt.")
    conversations.set_default_system_prompt(bob.user_id, "Bob's default.")
    request = signed_in_request(chat_settings, "alice", register=False)
    conversations.set_open_conversation(alice.user_id, app.signed_in(request).session_id, alice_chat)
    return app, request, bob.user_id, bob_chat


def bob_untouched(bob_id: int, bob_chat: int) -> None:
    chat = Conversation.get_by_id(bob_chat)
    assert (chat.tier, chat.system_prompt) == ("pro", "Bob's own prompt.")
    assert User.get_by_id(bob_id).default_system_prompt == "Bob's default."


def test_the_system_prompt_the_model_and_the_default_take_anything(world):
    app, alice, bob_id, bob_chat = world

    @FUZZ
    @given(tier=anything, prompt=anything)
    def run(tier, prompt):
        saved = app.save_system_prompt(alice, tier, prompt)
        assert set(saved) == {"settings_notice"} and isinstance(saved["settings_notice"], str)
        chosen = app.choose_model(alice, tier, prompt)
        assert set(chosen) == {"chat_notice"}
        default = app.save_default_system_prompt(alice, prompt)
        message = default["default_prompt_message"]
        assert message.startswith("⚠ ") or message.startswith("Saved")
        assert "Something went wrong" not in saved["settings_notice"] + message
        bob_untouched(bob_id, bob_chat)

    run()


def test_the_chats_own_edit_takes_any_event_and_refuses_beside_the_box(world):
    app, alice, bob_id, bob_chat = world

    @FUZZ
    @given(index=anything, value=anything, prompt=anything, tier=anything)
    def run(index, value, prompt, tier):
        event = gr.EditData(None, {"index": index, "value": value, "previous_value": None})
        shown = shown_after(app.edit_message(alice, tier, prompt, event))
        notice = shown.get("chat_notice", "")
        assert notice.startswith("⚠ ") and "Something went wrong" not in notice  # nothing to edit: said why
        assert shown.get("chatbot", []) == []  # her chat has no turns, and bob's never shows
        bob_untouched(bob_id, bob_chat)

    run()
