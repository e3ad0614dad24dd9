"""The sidebar's callbacks against anything a client can send (issues 11 and 19: ≥500 examples each).

Gradio hands a callback whatever a page (or a script reusing its session_hash) posted: a search of
any type, a list click ("open:12") made up or naming another user's chat, a forged State claiming
another user's chat, any title. Each callback must answer (a mistake the user can fix is a notice in
the sidebar, not a popup) or refuse with a message (GemmaChatError, shown as a popup): never another
exception, and never a change to another user's chat.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import fuzz_examples, signed_in_request
from gemma_chat.chats import conversations
from gemma_chat.store.db import Conversation
from gemma_chat.errors import GemmaChatError
from gemma_chat.ui import ChatApp

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=fuzz_examples(500), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=300),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


class NoModels:
    def tiers(self):
        return []


@pytest.fixture
def world(chat_settings):
    """alice (the caller) with three chats, bob with one she must never reach."""
    app = ChatApp(chat_settings, engine=NoModels())  # these callbacks never generate
    alice = signed_in_request(chat_settings, "alice")
    bob = signed_in_request(chat_settings, "bob")
    alice_chats = [conversations.create_conversation(alice.user_id, f"alice {n}") for n in range(3)]
    bob_chat = conversations.create_conversation(bob.user_id, "bob's secret chat")
    ids = alice_chats + [bob_chat, 0, -1, 10**12]
    clicks = st.one_of(
        st.tuples(st.sampled_from(["open", "rename", "delete", "export_md", "export_json", "new", "other"]), st.sampled_from(ids))
        .map(lambda drawn: f"{drawn[0]}:{drawn[1]}:7"),
        anything,
    )
    # What a page holds (her own chat ids, tagged with her id), what a forger might send instead
    # (bob's chat under her id, her chats under bob's, garbage), and anything at all.
    well_formed = st.fixed_dictionaries({
        "user_id": st.sampled_from([alice.user_id, alice.user_id, bob.user_id, 0, "1"]),
        "rows": st.lists(st.sampled_from(ids), min_size=1, max_size=3),
    })
    forged = st.fixed_dictionaries({"user_id": st.sampled_from([alice.user_id, bob.user_id]), "rows": anything})
    states = st.one_of(well_formed, well_formed, forged, anything)
    return app, alice, bob_chat, states, clicks


def bob_untouched(bob_chat: int) -> None:
    chat = Conversation.get_by_id(bob_chat)
    assert chat.title == "bob's secret chat" and chat.deleted_at is None


def chats_of(user_id: int) -> list[tuple]:
    return [(c.id, c.title, c.deleted_at) for c in Conversation.select().where(Conversation.user == user_id)]


def answers_or_refuses(call) -> bool:
    """True when the callback answered, False when it refused with a message; nothing else."""
    try:
        result = call()
    except GemmaChatError as refusal:
        assert refusal.message.strip()
        return False
    assert isinstance(result, dict)
    return True


def test_search_takes_any_text(world):
    app, alice, bob_chat, _, _ = world

    @FUZZ
    @given(search=anything)
    def run(search):
        assert answers_or_refuses(lambda: app.search_chats(alice, search))
        assert "bob&#x27;s secret chat" not in app.search_chats(alice, search)["chat_list"]

    run()
    bob_untouched(bob_chat)


def test_list_clicks_take_anything_and_open_only_her_chats(world):
    app, alice, bob_chat, _, clicks = world

    @FUZZ
    @given(click=clicks, search=anything)
    def run(click, search):
        before = chats_of(alice.user_id)
        shown = []
        assert answers_or_refuses(lambda: shown.append(app.chat_request(alice, click, search)) or shown[0])
        if "chatbot" in shown[0] and shown[0]["chatbot"]:
            assert shown[0]["chatbot"][0]["content"] != "bob's secret chat"
        if "download" in shown[0]:
            assert "bob" not in shown[0]["download"]
        assert chats_of(alice.user_id) == before  # a click only asks: renaming and deleting need their own button

    run()
    bob_untouched(bob_chat)


def test_rename_and_delete_take_any_state_and_title_and_reach_only_her_chats(world):
    app, alice, bob_chat, states, _ = world

    @FUZZ
    @given(data=st.data())
    def run(data):
        search = data.draw(anything)
        title = data.draw(st.one_of(st.text(max_size=300), anything))
        for change in (lambda: app.rename_chat(alice, data.draw(states), title, search),
                       lambda: app.delete_chat(alice, data.draw(states), search)):
            before = chats_of(alice.user_id)
            shown = []
            assert answers_or_refuses(lambda: shown.append(change()) or shown[0])
            if shown[0]["sidebar_notice"].startswith("⚠"):
                assert chats_of(alice.user_id) == before  # a refusal changed nothing
        bob_untouched(bob_chat)

    run()
    changed = Conversation.select().where(
        (Conversation.user == alice.user_id) & (Conversation.deleted_at.is_null(False) | ~Conversation.title.startswith("alice "))
    )
    assert changed.count() > 0  # the fuzzing did reach her own chats, not only refusals
