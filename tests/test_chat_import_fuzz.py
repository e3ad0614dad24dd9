"""Import against any document a file can hold, and the Import buttons' event against anything a client
can send (issue 19: ≥500 examples each).

A document is imported whole (each chat as read_document read it) or refused with a message — in
Russian too — and nothing of it is created; no credit moves and no turn becomes an interaction either
way. The callbacks answer every input with outputs, never another exception, and touch only the
signed-in user's chats.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import fuzz_examples, signed_in_request
from gemma_chat.billing import ledger
from gemma_chat.chats import conversations, documents
from gemma_chat.chats.documents import ChatImportError
from gemma_chat.store.db import Conversation, Interaction, LedgerEntry
from gemma_chat.ui import ChatApp
from gemma_chat.ui.text import translated

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=fuzz_examples(500), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MAX_MESSAGE = 200  # small, so that over-long messages come up

def mostly(usual, *others):
    """`usual` four times in five, else one of `others`: most documents get past the first check."""
    return st.integers(0, 4).flatmap(lambda n: st.one_of(*others) if n == 0 else usual)


scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40),
    st.sampled_from(["", " ", "ok", "pending", "refused", "mini", "x" * 65, "y" * 201, "a\x00b", "\ud800", "\udfff z",
                     documents.FORMAT, documents.ALL_FORMAT, "z" * (MAX_MESSAGE + 1)]),
)
text_like = st.one_of(scalar, st.text(max_size=80))


# Text a chat holds (no NUL, no lone surrogate), now and then only spaces.
some_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=60)
plain = mostly(some_text, st.sampled_from([" ", "\n\t", "*bold* `code` # heading", "Привет 👋"]))


def with_one_field_changed(valid, keys: list[str]):
    """`valid` objects, and such objects with one field set to any value or left out."""
    changed = st.tuples(valid, st.sampled_from(keys), st.one_of(text_like, st.just(...))).map(
        lambda found: {key: value for key, value in {**found[0], found[1]: found[2]}.items() if value is not ...}
    )
    return mostly(valid, changed)


good_turn = st.fixed_dictionaries(
    {"prompt": plain, "answer": st.one_of(st.none(), st.just(""), plain),
     "status": st.sampled_from([*documents.IMPORTED_STATUSES, "pending"]), "model": plain},
    optional={"credits": scalar},
)
turn = mostly(with_one_field_changed(good_turn, ["prompt", "answer", "status", "model"]), scalar)
good_chat = st.fixed_dictionaries(
    {"format": st.just(documents.FORMAT), "title": plain, "turns": st.lists(turn, max_size=4)},
    optional={"model": st.one_of(st.none(), plain), "system_prompt": st.one_of(st.none(), plain), "exported_at": scalar},
)
chat = with_one_field_changed(good_chat, ["format", "title", "model", "system_prompt", "turns"])
some_chats = st.lists(chat, min_size=1, max_size=3)
all_chats = st.fixed_dictionaries({
    "format": mostly(st.just(documents.ALL_FORMAT), scalar),
    "chats": mostly(some_chats, st.lists(st.one_of(chat, scalar), max_size=3), scalar),
})
document = mostly(st.one_of(chat, all_chats), scalar, st.lists(scalar, max_size=3))
# What a file holds: such a document as JSON (spaced or not), or any text or bytes at all.
json_text = st.tuples(document, st.sampled_from([None, 2])).map(lambda pair: json.dumps(pair[0], indent=pair[1]))
file_contents = mostly(
    json_text,
    st.text(max_size=200),
    st.binary(max_size=200),
    st.tuples(document, st.sampled_from(["utf-8", "utf-8-sig", "utf-16"])).map(
        lambda pair: json.dumps(pair[0], ensure_ascii=False).encode(pair[1], "surrogatepass")
    ),
)


@pytest.fixture
def alice(settings, database):
    return signed_in_request(settings, "alice")


def books(user_id: int) -> tuple:
    balance = ledger.get_balance(user_id)
    return balance.balance, balance.held, LedgerEntry.select().count(), Interaction.select().count()


@FUZZ
@given(contents=file_contents)
def test_a_document_is_imported_whole_or_refused_with_nothing_created(alice, contents):
    user_id = alice.user_id
    before, chats_before = books(user_id), Conversation.select().count()
    try:
        expected = documents.read_document(contents, max_message_chars=MAX_MESSAGE)
    except ChatImportError:
        expected = None
    try:
        imported = documents.import_chats(user_id, contents, max_message_chars=MAX_MESSAGE)
    except ChatImportError as exc:
        event("refused")
        assert expected is None
        assert exc.message and translated("ru", exc.message) != exc.message
        assert Conversation.select().count() == chats_before
    else:
        event(f"imported, {min(imported.turns, 2)}+ turns")
        assert expected is not None and len(imported.chat_ids) == len(expected)
        assert imported.turns == sum(len(chat.turns) for chat in expected)
        for chat_id, chat_read in zip(imported.chat_ids, expected):
            again = documents.chat_document(user_id, chat_id)
            assert (again["title"], again["model"], again["system_prompt"]) == (chat_read.title, chat_read.tier, chat_read.system_prompt)
            assert [(t["prompt"], t["answer"], t["status"], t["model"], t["credits"]) for t in again["turns"]] == [
                (*turn, 0) for turn in chat_read.turns
            ]
            # What was imported can be exported and imported again, unchanged.
            (twice,) = documents.import_chats(user_id, json.dumps(again), max_message_chars=MAX_MESSAGE).chat_ids
            assert {**documents.chat_document(user_id, twice), "exported_at": ""} == {**again, "exported_at": ""}
    assert books(user_id) == before


class TiersOnly:
    def tiers(self):
        return []


anything = st.one_of(
    scalar, st.lists(scalar, max_size=3), st.dictionaries(st.text(max_size=5), scalar, max_size=2),
    st.integers(min_value=0, max_value=10**20).map(str), json_text,
)


@pytest.fixture
def world(settings, alice):
    """The app, alice signed in, and bob with a chat of his own."""
    app = ChatApp(settings, TiersOnly())
    app.build()
    bob = signed_in_request(settings, "bob").user_id
    conversations.create_conversation(bob, "bob's chat")
    return app, alice, bob


@FUZZ
@given(file_text=anything, file_size=anything, search=anything, from_account=st.booleans())
def test_the_import_buttons_answer_anything_with_outputs_and_touch_only_the_user_s_chats(
    world, file_text, file_size, search, from_account
):
    app, alice, bob = world
    chats_before, books_before = len(conversations.list_chats(alice.user_id)), books(alice.user_id)
    callback = app.import_chats_from_account if from_account else app.import_chats
    shown = callback(alice, file_text, file_size, search)
    assert isinstance(shown, dict)
    if "chat_id" in shown:  # imported: the first new chat is open, and listed first
        assert conversations.list_chats(alice.user_id)[0].id == int(shown["chat_id"])
    else:
        assert len(conversations.list_chats(alice.user_id)) == chats_before
        message = shown.get("import_message" if from_account else "sidebar_notice")
        assert not message or message.startswith("⚠ ")
    assert books(alice.user_id) == books_before
    assert [chat.title for chat in conversations.list_chats(bob)] == ["bob's chat"]
