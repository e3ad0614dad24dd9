"""One chat turn end to end with the real bundled model: what is charged, logged and shown.

A fault-injecting wrapper around the real engine is used only where a failure must be forced.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest

from gemma_chat.accounts import auth
from gemma_chat.billing import ledger
from gemma_chat.chats import conversations, turn as chat_turn
from gemma_chat.store.db import ErrorEvent, Interaction
from gemma_chat.errors import GenerationError, QueueFullError
from gemma_chat.ops.verify import verify_database

pytestmark = pytest.mark.both_engines


@pytest.fixture
def alice(chat_settings):
    return auth.register_user(chat_settings, "alice", "long enough pw")


def run(settings, engine, user, tier="mini", message="What is the capital of France?", **kwargs):
    updates = list(chat_turn.run_turn(settings, engine, user.id, tier, message, **kwargs))
    assert updates and updates[-1].final and not any(u.final for u in updates[:-1])
    return updates


def balance(user) -> int:
    return ledger.get_balance(user.id).balance


def fail_generation(stream):
    """A FaultyEngine fault: the model fails before its first token."""
    stream.close()
    raise GenerationError("The model failed while generating; please try again.")
    yield  # a generator


class FaultyEngine:
    """The real engine, with a fault injected into generate()."""

    def __init__(self, engine, fault):
        self.engine, self.fault, self.calls = engine, fault, 0

    def tiers(self):
        return self.engine.tiers()

    def generate(self, tier, messages, *, stop=None, sampling=None):
        self.calls += 1
        return self.fault(self.engine.generate(tier, messages, stop=stop, sampling=sampling))


def test_an_answer_streams_and_is_charged_once(chat_settings, demo_engine, alice):
    updates = run(chat_settings, demo_engine, alice)
    final = updates[-1]
    assert final.status == "ok" and final.answer and final.credits_charged == 1
    assert "bundled demo" in final.model_label
    streamed = [u.answer for u in updates if u.status == "streaming"]
    assert streamed and streamed[-1] == final.answer  # token by token, growing to the answer
    assert balance(alice) == 9
    row = Interaction.get(Interaction.request_id == final.request_id)
    assert (row.status, row.credits_charged, row.prompt, row.answer) == ("ok", 1, "What is the capital of France?", final.answer)
    assert row.completion_tokens > 0 and row.prompt_tokens > 0 and row.duration_ms > 0
    assert verify_database(chat_settings) == []


def test_pro_costs_three(chat_settings, demo_engine, alice):
    assert run(chat_settings, demo_engine, alice, tier="pro")[-1].credits_charged == 3
    assert balance(alice) == 7


def test_not_enough_credits_is_refused_before_generating(chat_settings, demo_engine, alice):
    ledger.grant_credits(alice.id, -8, actor_id=None)
    engine = FaultyEngine(demo_engine, lambda stream: stream)
    final = run(chat_settings, engine, alice, tier="pro")[-1]
    assert final.status == "refused" and engine.calls == 0
    assert "costs 3 credits" in final.message and "you have 2" in final.message and "Top up" in final.message
    assert balance(alice) == 2
    row = Interaction.get(Interaction.user == alice.id)
    assert (row.status, row.credits_charged) == ("refused", 0)


def test_a_model_failure_mid_stream_charges_nothing_and_logs_details(chat_settings, demo_engine, alice):
    def fail_after_two_deltas(stream):
        deltas = 0
        for item in stream:
            yield item
            deltas += isinstance(item, str)
            if deltas == 2:
                raise GenerationError("The model failed while generating; please try again.", detail="llama_decode returned -1")

    final = run(chat_settings, FaultyEngine(demo_engine, fail_after_two_deltas), alice)[-1]
    assert final.status == "error" and final.credits_charged == 0
    assert "Nothing was charged" in final.message and "(error E-" in final.message
    assert balance(alice) == 10 and ledger.get_balance(alice.id).held == 0
    event = ErrorEvent.get()
    assert event.error_id in final.message
    assert "llama_decode returned -1" in event.traceback and "GenerationError" in event.traceback
    assert Interaction.get().status == "error"
    assert verify_database(chat_settings) == []


def test_a_context_overflow_is_refused_without_charge(chat_settings, demo_engine, alice):
    final = run(chat_settings, demo_engine, alice, message="word " * 1500)[-1]
    assert final.status == "error" and "too long" in final.message
    assert balance(alice) == 10


def test_stop_before_any_text_releases(chat_settings, demo_engine, alice):
    stop = threading.Event()
    stop.set()
    final = run(chat_settings, demo_engine, alice, stop=stop)[-1]
    assert final.status == "stopped" and final.credits_charged == 0 and "Nothing was charged" in final.message
    assert balance(alice) == 10
    assert Interaction.get().status == "stopped"


def test_stop_after_text_is_charged_as_stopped(chat_settings, demo_engine, alice):
    stop = threading.Event()
    updates = []
    for update in chat_turn.run_turn(chat_settings, demo_engine, alice.id, "mini", "Tell me about the sea.", stop=stop):
        updates.append(update)
        if update.status == "streaming":
            stop.set()
    final = updates[-1]
    assert final.status == "stopped" and final.credits_charged == 1 and final.answer
    assert balance(alice) == 9
    assert Interaction.get().status == "stopped"


@pytest.mark.parametrize("close_after_text, charged", [(False, 0), (True, 1)])
def test_a_closed_tab_settles_like_stop(chat_settings, demo_engine, alice, close_after_text, charged):
    turn = chat_turn.run_turn(chat_settings, demo_engine, alice.id, "mini", "Tell me about the sea.")
    for update in turn:
        if not close_after_text or update.status == "streaming":
            break
    turn.close()  # what Gradio does when the browser goes away
    assert balance(alice) == 10 - charged
    assert ledger.get_balance(alice.id).held == 0
    assert Interaction.get().status == "stopped"
    assert verify_database(chat_settings) == []


@pytest.mark.parametrize(
    "message, tier, expected",
    [
        ("   ", "mini", "Type a message"),
        ("x" * 9000, "mini", "limit is 8,000"),
        ("nul\x00byte", "mini", "NUL"),
        ("hi", "ultra", "Unknown model tier"),
    ],
)
def test_bad_requests_are_rejected_before_anything_is_held(chat_settings, demo_engine, alice, message, tier, expected):
    final = run(chat_settings, demo_engine, alice, tier=tier, message=message)[-1]
    assert final.status == "rejected" and expected in final.message
    assert Interaction.select().count() == 0 and balance(alice) == 10


def test_a_full_queue_says_busy_and_charges_nothing(chat_settings, demo_engine, alice):
    def queue_full(stream):
        raise QueueFullError("The model is busy; please try again in a moment.")
        yield  # pragma: no cover

    final = run(chat_settings, FaultyEngine(demo_engine, queue_full), alice)[-1]
    assert final.status == "busy" and "try again" in final.message
    assert balance(alice) == 10 and ledger.get_balance(alice.id).held == 0


def test_a_locked_database_fails_cleanly(data_dir, demo_engine):
    from conftest import demo_settings
    from gemma_chat.ops.startup import open_data_dir

    settings = demo_settings(data_dir, busy_timeout_ms=200)
    open_data_dir(settings)
    user = auth.register_user(settings, "alice", "long enough pw")
    blocker = sqlite3.connect(settings.db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        final = run(settings, demo_engine, user)[-1]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert final.status == "busy" and "try again" in final.message.lower()
    assert balance(user) == 10 and Interaction.select().count() == 0


def test_a_row_locked_past_the_timeout_on_postgresql_is_the_same_busy_message(data_dir, demo_engine, postgres_url):
    import psycopg

    from conftest import demo_settings
    from gemma_chat.ops.startup import open_data_dir

    settings = demo_settings(data_dir, busy_timeout_ms=200, database_url=postgres_url)
    open_data_dir(settings)
    user = auth.register_user(settings, "alice", "long enough pw")
    with psycopg.connect(postgres_url) as blocker:  # another instance in the middle of a long transaction
        blocker.execute("SELECT * FROM users WHERE id = %s FOR UPDATE", (user.id,))
        final = run(settings, demo_engine, user)[-1]
    assert final.status == "busy" and "try again" in final.message.lower()
    assert balance(user) == 10 and Interaction.select().count() == 0


def test_earlier_turns_are_sent_as_context(chat_settings, demo_engine, alice):
    seen = []

    def record(stream):
        return stream

    engine = FaultyEngine(demo_engine, record)
    original = engine.generate
    engine.generate = lambda tier, messages, stop=None, sampling=None: seen.append(messages) or original(tier, messages, stop=stop, sampling=sampling)
    run(chat_settings, engine, alice, message="And Germany?", history=[("Capital of France?", "Paris.")])
    assert seen[0] == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And Germany?"},
    ]


def test_a_replacement_turn_is_charged_anew_and_hides_the_turn_it_replaces(chat_settings, demo_engine, alice):
    first = run(chat_settings, demo_engine, alice, message="Name a colour.", new_conversation=True)[-1]
    chat_id = first.conversation_id
    second = run(chat_settings, demo_engine, alice, message="Name a fruit.", conversation_id=chat_id)[-1]
    old = Interaction.get(Interaction.request_id == second.request_id)
    again = run(chat_settings, demo_engine, alice, message="Name a fruit.", conversation_id=chat_id, replaces_id=old.id)[-1]
    assert again.status == "ok" and again.credits_charged == 1
    assert balance(alice) == 7  # three answers, three charges
    new = Interaction.get(Interaction.request_id == again.request_id)
    assert new.replaces_id == old.id and Interaction.select().count() == 3  # the old turn stays on record
    turns = conversations.conversation_turns(alice.id, chat_id)
    assert [t.id for t in turns] == [Interaction.get(Interaction.request_id == first.request_id).id, new.id]
    assert conversations.context_of(turns)[-1] == ("Name a fruit.", again.answer)
    assert conversations.list_conversations(alice.id).rows[0].turns == 2
    assert verify_database(chat_settings) == []


def test_only_the_chats_last_turn_can_be_replaced(chat_settings, demo_engine, alice):
    first = run(chat_settings, demo_engine, alice, message="One.", new_conversation=True)[-1]
    run(chat_settings, demo_engine, alice, message="Two.", conversation_id=first.conversation_id)
    first_id = Interaction.get(Interaction.request_id == first.request_id).id
    engine = FaultyEngine(demo_engine, lambda stream: stream)
    for kwargs in ({"conversation_id": first.conversation_id}, {"new_conversation": True}, {}):
        final = run(chat_settings, engine, alice, message="One again.", replaces_id=first_id, **kwargs)[-1]
        assert final.status == "rejected" and "last message" in final.message, kwargs
    assert engine.calls == 0 and balance(alice) == 8 and ledger.get_balance(alice.id).held == 0
    assert Interaction.select().count() == 2


def test_a_failed_or_refused_replacement_leaves_the_old_answer_shown(chat_settings, demo_engine, alice):
    first = run(chat_settings, demo_engine, alice, message="Name a river.", new_conversation=True)[-1]
    chat_id = first.conversation_id
    old_id = Interaction.get(Interaction.request_id == first.request_id).id

    failed = run(chat_settings, FaultyEngine(demo_engine, fail_generation), alice, message="Name a river.", conversation_id=chat_id, replaces_id=old_id)
    assert failed[-1].status == "error"
    ledger.grant_credits(alice.id, -9, actor_id=None)
    refused = run(chat_settings, demo_engine, alice, tier="pro", message="Name a river.", conversation_id=chat_id, replaces_id=old_id)
    assert refused[-1].status == "refused" and balance(alice) == 0, refused[-1].message
    assert [t.id for t in conversations.conversation_turns(alice.id, chat_id)] == [old_id]
