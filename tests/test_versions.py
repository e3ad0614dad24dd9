"""The versions of a chat's turn (chats/versions.py), with the real bundled model: a regenerated or
edited answer keeps the ones it replaced, each charged once and listed in History, in order."""

from __future__ import annotations

import json

import pytest

from gemma_chat.accounts import auth
from gemma_chat.billing import ledger
from gemma_chat.chats import conversations, versions
from gemma_chat.chats.history import list_history
from gemma_chat.ops.verify import verify_database
from gemma_chat.store.db import Interaction
from test_chat import FaultyEngine, fail_generation, run

pytestmark = pytest.mark.both_engines


@pytest.fixture
def alice(chat_settings):
    return auth.register_user(chat_settings, "alice", "long enough pw")


def turn_id(update) -> int:
    return Interaction.get(Interaction.request_id == update.request_id).id



def turn_versions(user_id: int, chat: int, turn_id: int):
    """Every version of the chat's turn that `turn_id` is one of, oldest first, as paging shows them."""
    shown = versions.shown_turns(user_id, chat)
    for index, each in enumerate(shown):
        if turn_id in each.version_ids and not each.turn.imported:
            return [versions.shown_turns(user_id, chat, chosen=[v])[index].turn for v in each.version_ids]
    raise LookupError(f"the chat shows no turn with version {turn_id}")

def test_regenerating_twice_keeps_three_versions_each_charged_once_and_in_history(chat_settings, demo_engine, alice):
    first = run(chat_settings, demo_engine, alice, message="Name a colour.", new_conversation=True)[-1]
    chat = first.conversation_id
    finals = [first]
    for _ in range(2):  # Regenerate: the chat's last turn, answered again
        last = conversations.last_turn(alice.id, chat)
        finals.append(run(chat_settings, demo_engine, alice, message=last.prompt, conversation_id=chat, replaces_id=last.id)[-1])
    ids = [turn_id(final) for final in finals]

    found = turn_versions(alice.id, chat, ids[-1])
    assert [(v.id, v.prompt, v.answer, v.status, v.credits_charged) for v in found] == [
        (id, "Name a colour.", final.answer, "ok", 1) for id, final in zip(ids, finals)
    ]
    assert turn_versions(alice.id, chat, ids[0]) == found  # any version names the same turn
    assert ledger.get_balance(alice.id).balance == 7  # three answers, three charges, no more
    charges = Interaction.select().where(Interaction.credits_charged > 0).count()
    assert charges == 3 and verify_database(chat_settings) == []
    history = list_history(alice.id)
    assert history.total == 3 and {row.request_id for row in history.rows} == {final.request_id for final in finals}

    [shown] = versions.shown_turns(alice.id, chat)  # the chat shows one turn: the newest version
    assert (shown.turn.id, shown.version_ids, shown.position) == (ids[2], tuple(ids), 3)
    assert (shown.neighbour(-1), shown.neighbour(1)) == (ids[1], None)
    [paged] = versions.shown_turns(alice.id, chat, chosen=[ids[1], ids[0]])  # the last choice wins
    assert (paged.turn.id, paged.turn.answer, paged.position, paged.neighbour(-1), paged.neighbour(1)) == (
        ids[0], finals[0].answer, 1, None, ids[1],
    )
    assert [t.id for t in conversations.conversation_turns(alice.id, chat)] == [ids[2]]  # paging changed nothing
    assert ledger.get_balance(alice.id).balance == 7


def test_an_edit_keeps_the_earlier_message_and_answer_as_a_version(chat_settings, demo_engine, alice):
    first = run(chat_settings, demo_engine, alice, message="Name a fruit.", new_conversation=True)[-1]
    chat = first.conversation_id
    second = run(chat_settings, demo_engine, alice, message="Name a river.", conversation_id=chat)[-1]
    edited = run(chat_settings, demo_engine, alice, message="Name a lake.", conversation_id=chat, replaces_id=turn_id(second))[-1]
    shown = versions.shown_turns(alice.id, chat)
    assert [s.version_ids for s in shown] == [(turn_id(first),), (turn_id(second), turn_id(edited))]
    assert [v.prompt for v in turn_versions(alice.id, chat, turn_id(edited))] == ["Name a river.", "Name a lake."]
    assert [v.prompt for v in turn_versions(alice.id, chat, turn_id(first))] == ["Name a fruit."]


def test_only_answers_that_were_charged_are_versions(chat_settings, demo_engine, alice):
    first = run(chat_settings, demo_engine, alice, message="Name a bird.", new_conversation=True)[-1]
    chat, first_id = first.conversation_id, turn_id(first)

    failed = run(chat_settings, FaultyEngine(demo_engine, fail_generation), alice, message="Name a bird.", conversation_id=chat, replaces_id=first_id)
    assert failed[-1].status == "error"
    assert [v.id for v in turn_versions(alice.id, chat, first_id)] == [first_id]  # the failure is none
    again = run(chat_settings, demo_engine, alice, message="Name a bird.", conversation_id=chat, replaces_id=first_id)[-1]
    assert [v.id for v in turn_versions(alice.id, chat, turn_id(again))] == [first_id, turn_id(again)]

    ledger.grant_credits(alice.id, -ledger.get_balance(alice.id).balance, actor_id=None)
    refused = run(chat_settings, demo_engine, alice, message="Name a tree.", conversation_id=chat)[-1]
    assert refused.status == "refused"  # kept in the chat, never ran
    ledger.grant_credits(alice.id, 5, actor_id=None)
    sent = run(chat_settings, demo_engine, alice, message="Name a tree.", conversation_id=chat, replaces_id=turn_id(refused))[-1]
    assert sent.status == "ok"
    assert [s.version_ids for s in versions.shown_turns(alice.id, chat)] == [(first_id, turn_id(again)), (turn_id(sent),)]


def test_versions_are_only_the_owners_and_only_of_a_turn_the_chat_shows(chat_settings, demo_engine, alice):
    bob = auth.register_user(chat_settings, "bob", "long enough pw")
    mine = run(chat_settings, demo_engine, alice, message="Name a star.", new_conversation=True)[-1]
    theirs = run(chat_settings, demo_engine, bob, message="Name a moon.", new_conversation=True)[-1]
    with pytest.raises(conversations.ConversationNotFoundError):
        turn_versions(bob.id, mine.conversation_id, turn_id(mine))
    with pytest.raises(LookupError):
        turn_versions(alice.id, mine.conversation_id, turn_id(theirs))
    [shown] = versions.shown_turns(alice.id, mine.conversation_id, chosen=[turn_id(theirs), -1, 10**12])
    assert shown.turn.id == turn_id(mine)  # a choice of no version of this chat is ignored


def test_an_imported_chat_s_turns_never_take_the_versions_of_turns_run_in_it(chat_settings, demo_engine, alice):
    """Imported turns are numbered in their own table: ids equal to the chat's own turns' must not mix."""
    from gemma_chat.chats import documents

    document = {"format": documents.FORMAT, "title": "From elsewhere", "model": "mini", "system_prompt": "", "turns": [
        {"prompt": f"Old question {n}", "answer": f"Old answer {n}", "status": "ok", "model": "Elsewhere"} for n in (1, 2)
    ]}
    [chat] = documents.import_chats(alice.id, json.dumps(document), max_message_chars=4000).chat_ids
    first = run(chat_settings, demo_engine, alice, message="Name a tree.", conversation_id=chat)[-1]
    again = run(chat_settings, demo_engine, alice, message="Name a tree.", conversation_id=chat, replaces_id=turn_id(first))[-1]
    assert {turn_id(first), turn_id(again)} & {1, 2}  # a fresh database: the ids do meet

    shown = versions.shown_turns(alice.id, chat, chosen=[turn_id(first)])
    assert [(s.turn.prompt, s.turn.answer, len(s.version_ids)) for s in shown] == [
        ("Old question 1", "Old answer 1", 1), ("Old question 2", "Old answer 2", 1), ("Name a tree.", first.answer, 2),
    ]
