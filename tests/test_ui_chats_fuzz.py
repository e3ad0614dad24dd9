"""The Chats tab's callbacks against anything a client can send (issue 11: ≥500 examples each).

Gradio hands a callback whatever a page (or a script reusing its session_hash) posted: pages as
text or floats, a forged State claiming another user's chat, a table click with any index. Each
callback must answer or refuse with a message (GemmaChatError, shown as a popup): never another
exception, and never a change to another user's chat.
"""

from __future__ import annotations

import gradio as gr
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import signed_in_request
from gemma_chat import conversations
from gemma_chat.store.db import Conversation
from gemma_chat.errors import GemmaChatError
from gemma_chat.ui import ChatApp

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=300),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@pytest.fixture
def world(chat_settings):
    """alice (the caller) with three chats, bob with one she must never reach."""
    app = ChatApp(chat_settings, engine=None)  # these callbacks never generate
    alice = signed_in_request(chat_settings, "alice")
    bob = signed_in_request(chat_settings, "bob")
    alice_chats = [conversations.create_conversation(alice.user_id, f"alice {n}") for n in range(3)]
    bob_chat = conversations.create_conversation(bob.user_id, "bob's secret chat")
    ids = alice_chats + [bob_chat, 0, -1, 10**12]
    # What a page holds (her own chat ids, tagged with her id), what a forger might send instead
    # (bob's chat under her id, her chats under bob's, garbage), and anything at all.
    well_formed = st.fixed_dictionaries({
        "user_id": st.sampled_from([alice.user_id, alice.user_id, bob.user_id, 0, "1"]),
        "rows": st.lists(st.sampled_from(ids), min_size=1, max_size=3),
    })
    forged = st.fixed_dictionaries({"user_id": st.sampled_from([alice.user_id, bob.user_id]), "rows": anything})
    states = st.one_of(well_formed, well_formed, forged, anything)
    return app, alice, bob_chat, states


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


def test_listing_paging_and_search_take_any_page_and_text(world):
    app, alice, bob_chat, _ = world

    @FUZZ
    @given(page=anything, search=anything, step=st.sampled_from([app.chats_previous, app.chats_next]))
    def run(page, search, step):
        answers_or_refuses(lambda: app.chats_page(alice, page, search))
        answers_or_refuses(lambda: step(alice, page, search))
        answers_or_refuses(lambda: app.chats_search(alice, search))

    run()
    bob_untouched(bob_chat)


def test_selecting_and_opening_take_any_state_and_click(world):
    app, alice, bob_chat, states = world

    @FUZZ
    @given(data=st.data())
    def run(data):
        ids = data.draw(states)
        index = data.draw(st.one_of(anything, st.tuples(st.integers(-2, 5), st.integers(-2, 5)).map(list)))
        picked = []

        def select():
            result = app.select_chat(alice, ids, gr.SelectData(None, {"index": index, "value": None}))
            picked.append(result)
            return result

        answers_or_refuses(select)
        if picked and picked[0]["chat_title"]:
            assert picked[0]["chat_title"].startswith("alice")  # only her own chats are ever selected
        answers_or_refuses(lambda: app.open_chat(alice, data.draw(states)))

    run()
    bob_untouched(bob_chat)


def test_rename_and_delete_take_any_state_and_title_and_reach_only_her_chats(world):
    app, alice, bob_chat, states = world

    @FUZZ
    @given(data=st.data())
    def run(data):
        page, search = data.draw(anything), data.draw(anything)
        title = data.draw(st.one_of(st.text(max_size=300), anything))
        for change in (lambda: app.rename_chat(alice, page, search, data.draw(states), title),
                       lambda: app.delete_chat(alice, page, search, data.draw(states))):
            before = chats_of(alice.user_id)
            if not answers_or_refuses(change):
                assert chats_of(alice.user_id) == before  # a refusal changed nothing
        bob_untouched(bob_chat)

    run()
    changed = Conversation.select().where(
        (Conversation.user == alice.user_id) & (Conversation.deleted_at.is_null(False) | ~Conversation.title.startswith("alice "))
    )
    assert changed.count() > 0  # the fuzzing did reach her own chats, not only refusals
