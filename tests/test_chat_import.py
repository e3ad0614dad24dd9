"""Import (issue 19): a chat exported as JSON comes back as the same chat for the user importing it, and
all of a user's chats as one file come back as those chats, without a credit moving or a turn showing
where billed turns are read (History, the statement, the reports, `verify`). A document that cannot be
imported is refused with what is wrong and where, and nothing of it is created.

The Chats sidebar's and the Account tab's callbacks are here too; the file chooser is in
tests/e2e/test_chat_screen.py.
"""

from __future__ import annotations

import json
import re
import types

import pytest

from conftest import browser_request, shown_after, signed_in_request
from gemma_chat.billing import ledger, statement
from gemma_chat.chats import conversations, documents, interactions
from gemma_chat.chats.documents import ChatImportError
from gemma_chat.chats.history import list_history
from gemma_chat.chats.interactions import TurnOutcome
from gemma_chat.ops.reports import Reports
from gemma_chat.ops.verify import verify_database
from gemma_chat.store import conversation_queries, db
from gemma_chat.store.db import Conversation, Interaction, LedgerEntry
from gemma_chat.ui import ChatApp
from gemma_chat.ui.text import translated

pytestmark = pytest.mark.both_engines

MAX_MESSAGE = 8000


def paid_turn(user_id: int, chat_id: int, prompt: str, answer: str, *, price: int = 1, status: str = "ok") -> None:
    """A turn of the chat, held and captured (or released) as chats/turn.py does it."""
    request_id = ledger.new_request_id()
    with db.transaction():
        ledger.hold_credits(user_id, price, request_id)
        interactions.start_interaction(request_id, user_id, "pro", "Gemma pro", prompt, conversation_id=chat_id)
    with db.transaction():
        if status in ("ok", "stopped"):
            ledger.capture_hold(request_id)
            interactions.finish_interaction(request_id, TurnOutcome(status, answer, price, 5, 7, 10, 20))
        else:
            ledger.release_hold(request_id, "failed")
            interactions.finish_interaction(request_id, TurnOutcome(status, error_id="E-1"))


def books(user_id: int) -> dict:
    """Everything that says what a user paid for: it must read the same before and after an import."""
    balance = ledger.get_balance(user_id)
    return {
        "balance": (balance.balance, balance.held),
        "ledger": [(e.kind, e.amount, e.balance_after, e.request_id) for e in LedgerEntry.select().order_by(LedgerEntry.id)],
        "history": [(r.prompt, r.status, r.credits_charged) for r in list_history(user_id, 1, page_size=1000).rows],
        "statement": statement.totals_by_kind(user_id),
        "reports": Reports.for_range().full(),
        "interactions": [(i.id, i.prompt, i.credits_charged) for i in Interaction.select().order_by(Interaction.id)],
    }


def without_time_and_credits(document: dict) -> dict:
    """An exported chat, minus what an import does not keep: when it was exported, what it cost there."""
    kept = {key: value for key, value in document.items() if key != "exported_at"}
    kept["turns"] = [{key: value for key, value in turn.items() if key != "credits"} for turn in document["turns"]]
    return kept


def chats_of(user_id: int) -> list[int]:
    return [row.id for row in conversations.list_chats(user_id)]


@pytest.fixture
def alice(settings, database):
    request = signed_in_request(settings, "alice")
    return request.user_id


@pytest.fixture
def alice_chat(alice) -> int:
    """A chat with paid, stopped, failed and refused turns, a model and a system prompt of its own."""
    chat = conversations.create_conversation(alice, "Trip to the sea")
    conversations.save_chat_settings(alice, chat, "pro", "Answer like a sailor.\nBriefly.")
    paid_turn(alice, chat, "Where is the sea?", "West of here.\n\n```\ncode, even\n```")
    paid_turn(alice, chat, "How far?", "About 40 km", status="stopped")
    paid_turn(alice, chat, "And by train?", "", status="error")
    interactions.log_refused(ledger.new_request_id(), alice, "pro", "Gemma pro", "Tickets?", conversation_id=chat)
    return chat


def test_an_exported_chat_imports_as_the_same_chat_and_no_credit_moves(settings, alice, alice_chat):
    exported = documents.chat_document(alice, alice_chat)
    before = books(alice)

    imported = documents.import_chats(alice, json.dumps(exported, ensure_ascii=False, indent=2), max_message_chars=MAX_MESSAGE)

    (new_chat,) = imported.chat_ids
    assert new_chat != alice_chat and imported.turns == 4
    again = documents.chat_document(alice, new_chat)
    assert without_time_and_credits(again) == without_time_and_credits(exported)
    assert [turn["credits"] for turn in again["turns"]] == [0, 0, 0, 0]  # paid where it was answered, not here
    assert books(alice) == before
    assert verify_database(settings) == []
    # The chat is the newest in the sidebar, its shown turns counted and its messages found by search.
    assert chats_of(alice) == [new_chat, alice_chat]
    listing = conversations.list_conversations(alice)
    assert [(row.id, row.turns) for row in listing.rows] == [(new_chat, 3), (alice_chat, 3)]  # a refused turn never ran
    assert [row.id for row in conversations.list_chats(alice, "by train")] == [new_chat, alice_chat]


def test_all_chats_come_back_in_the_sidebar_s_order(settings, alice, alice_chat):
    second = conversations.create_conversation(alice, "Second")
    paid_turn(alice, second, "Two?", "Two.")
    third = conversations.create_conversation(alice, "Empty one")
    everything = documents.all_chats_document(alice)
    assert [chat["title"] for chat in everything["chats"]] == ["Empty one", "Second", "Trip to the sea"]
    before = books(alice)

    imported = documents.import_chats(alice, json.dumps(everything).encode(), max_message_chars=MAX_MESSAGE)

    assert len(imported.chat_ids) == 3 and imported.turns == 5
    assert chats_of(alice) == imported.chat_ids + [third, second, alice_chat]
    assert [without_time_and_credits(documents.chat_document(alice, chat)) for chat in imported.chat_ids] == [
        without_time_and_credits(chat) for chat in everything["chats"]
    ]
    assert books(alice) == before and verify_database(settings) == []


def test_another_user_imports_it_as_their_own_and_the_exporter_s_chats_are_untouched(settings, alice, alice_chat):
    bob = signed_in_request(settings, "bob").user_id
    exported = json.dumps(documents.chat_document(alice, alice_chat))
    alice_before, bob_before = books(alice), books(bob)
    (bobs,) = documents.import_chats(bob, exported, max_message_chars=MAX_MESSAGE).chat_ids
    assert chats_of(bob) == [bobs] and chats_of(alice) == [alice_chat]
    assert books(alice) == alice_before and books(bob) == bob_before
    with pytest.raises(conversations.ConversationNotFoundError):
        conversations.get_conversation(alice, bobs)


def test_an_imported_chat_goes_on_as_context_and_its_turns_cannot_be_replaced(alice, alice_chat):
    (chat,) = documents.import_chats(
        alice, json.dumps(documents.chat_document(alice, alice_chat)), max_message_chars=MAX_MESSAGE
    ).chat_ids
    turns = conversations.conversation_turns(alice, chat)
    assert all(turn.imported for turn in turns)
    # The model is given the answered turns again, as in the chat it came from.
    assert conversations.context_of(turns) == [
        ("Where is the sea?", "West of here.\n\n```\ncode, even\n```"), ("How far?", "About 40 km"),
    ]
    with pytest.raises(Exception, match="An imported message cannot be regenerated"):
        conversations.check_replaceable(alice, chat, turns[-1].id)
    # A turn run in it comes after the imported ones, and that one can be replaced as usual.
    paid_turn(alice, chat, "One more?", "Yes.")
    last = conversations.last_turn(alice, chat)
    assert (last.prompt, last.imported) == ("One more?", False)
    assert conversations.check_replaceable(alice, chat, last.id) == last
    assert [turn.prompt for turn in conversations.conversation_turns(alice, chat)][-2:] == ["Tickets?", "One more?"]
    assert [turn.prompt for turn in conversations.conversation_turns(alice, chat, limit=2)] == ["Tickets?", "One more?"]


def test_a_pending_turn_comes_back_interrupted_and_a_blank_title_is_named_after_the_first_message(alice):
    document = {
        "format": documents.FORMAT, "title": "  ", "model": None, "system_prompt": None,
        "turns": [{"prompt": "  Hello *there*  ", "answer": None, "status": "pending", "model": "m"}],
    }
    (chat,) = documents.import_chats(alice, json.dumps(document), max_message_chars=MAX_MESSAGE).chat_ids
    again = documents.chat_document(alice, chat)
    assert (again["title"], again["model"], again["system_prompt"]) == ("Hello there", None, "")
    assert again["turns"] == [{"prompt": "Hello *there*", "answer": "", "status": "interrupted", "model": "m", "credits": 0}]


# --- what cannot be imported -------------------------------------------------------------------


def chat(**changes) -> dict:
    turn = {"prompt": "Hi", "answer": "Hello", "status": "ok", "model": "Gemma mini", "credits": 1}
    document = {"format": documents.FORMAT, "title": "A chat", "model": "mini", "system_prompt": "", "turns": [turn]}
    turn_changes = changes.pop("turn", {})
    document["turns"] = [{**turn, **turn_changes}] if turn_changes is not None else []
    document.update(changes)
    return {key: value for key, value in document.items() if value is not ...}


def many(*chats) -> dict:
    return {"format": documents.ALL_FORMAT, "exported_at": "2026-12-01T00:00:00Z", "chats": list(chats)}


def turns(count: int) -> list[dict]:
    return [{"prompt": f"q{n}", "answer": "a", "status": "ok", "model": "m"} for n in range(count)]


REFUSED = [
    (b"{" + b" " * (5 * 1024 * 1024), "The file is 5.1 MB; the limit is 5 MB."),
    (b'{"format": "gemma-chat.chat/1", "title": "\xff"}', "The file is not UTF-8 text."),
    ('{"format": "gemma-chat.chat/1",\n "title": }', "The file is not valid JSON (line 2, column 11)."),
    ("[" * 100_000, "The file is not valid JSON."),
    ('{"format": "gemma-chat.chat/1", "title": 1' + "0" * 5000 + "}", "The file is not valid JSON."),
    ([chat()], "This is not a gemma-chat export: the file holds no JSON object."),
    (chat(format="gemma-chat.chat/2"),
     'This is not a gemma-chat export: its "format" is not gemma-chat.chat/1 or gemma-chat.chats/1.'),
    (chat(format=...), 'This is not a gemma-chat export: its "format" is not gemma-chat.chat/1 or gemma-chat.chats/1.'),
    ({"format": documents.ALL_FORMAT, "chats": {"1": chat()}}, '"chats" must be a list of chats.'),
    (many(), "The file has no chats."),
    (many(*[chat()] * 1001), "The file has 1,001 chats; at most 1,000 can be imported at once."),
    (chat(turns=turns(1001)), "The chat has 1,001 turns; at most 1,000 can be imported."),
    (many(*[chat(turns=turns(1000))] * 10, chat()), "Chat 11: The file has more than 10,000 turns; import fewer chats at once."),
    (chat(turns="Hi"), '"turns" must be a list of turns.'),
    (chat(title=...), 'The chat has no "title".'),
    (chat(title=["A"]), '"title" must be text.'),
    (chat(title="x" * 201), "A chat title has at most 200 characters."),
    (chat(title="a\x00b"), '"title" contains a NUL or an invalid character.'),
    (chat(title="a\ud800b"), '"title" contains a NUL or an invalid character.'),
    (chat(model="m" * 65), '"model" is 65 characters long; the limit is 64.'),
    (chat(model=3), '"model" must be text.'),
    (chat(system_prompt="s" * 4001), "A system prompt has at most 4,000 characters."),
    (chat(system_prompt={"text": "x"}), '"system_prompt" must be text.'),
    (chat(turn={"prompt": "x" * (MAX_MESSAGE + 1)}), "Turn 1: The message is 8,001 characters long; the limit is 8,000."),
    (chat(turn={"prompt": " \n "}), "Turn 1: The message is empty."),
    (chat(turn={"prompt": None}), 'Turn 1: "prompt" must be text.'),
    (chat(turn={"prompt": "\x00"}), 'Turn 1: "prompt" contains a NUL or an invalid character.'),
    (chat(turn={"answer": "a" * 1_000_001}), "Turn 1: The answer is 1,000,001 characters long; the limit is 1,000,000."),
    (chat(turn={"answer": "\udfff"}), 'Turn 1: "answer" contains a NUL or an invalid character.'),
    (chat(turn={"answer": 12}), 'Turn 1: "answer" must be text.'),
    (chat(turn={"status": "charged"}), 'Turn 1: "status" must be one of ok, stopped, error, interrupted, refused.'),
    (chat(turn={"status": None}), 'Turn 1: "status" must be one of ok, stopped, error, interrupted, refused.'),
    (chat(turn={"model": ""}), 'Turn 1: "model" must name the model that answered.'),
    (chat(turn={"model": "m" * 201}), 'Turn 1: "model" is 201 characters long; the limit is 200.'),
    ({**chat(), "turns": [turns(1)[0], "Hi"]}, "Turn 2: This is not a turn: a turn is a JSON object."),
    (many(chat(), "A chat"), "Chat 2: This is not a chat: a chat is a JSON object."),
    (many(chat(), chat(format=documents.ALL_FORMAT)), 'Chat 2: Its "format" is not gemma-chat.chat/1.'),
    # All or nothing: the first two chats are good, the third is not, and none is created.
    (many(chat(), chat(), chat(turns=[*turns(3), {"prompt": "q", "status": "ok", "model": "m", "answer": "\x00"}])),
     'Chat 3, turn 4: "answer" contains a NUL or an invalid character.'),
]


AS_IT_IS = re.compile(r"«[^»]*»|gemma-chat\.chats?/1|gemma-chat|JSON|UTF-8|NUL|ok, stopped, error, interrupted, refused")


@pytest.mark.parametrize("document, message", REFUSED, ids=[message[:60] for _, message in REFUSED])
def test_a_document_that_cannot_be_imported_is_refused_with_what_is_wrong_and_nothing_is_created(
    alice, alice_chat, document, message
):
    if not isinstance(document, (str, bytes)):
        document = json.dumps(document)
    before, chats_before = books(alice), Conversation.select().count()
    with pytest.raises(ChatImportError) as refused:
        documents.import_chats(alice, document, max_message_chars=MAX_MESSAGE)
    assert refused.value.message == message
    # And a Russian page says it in Russian, every part of it (the JSON's own names stay as they are).
    russian = translated("ru", refused.value)
    assert not re.search(r"[A-Za-z]{3,}", AS_IT_IS.sub("", russian)), russian
    assert Conversation.select().count() == chats_before and chats_of(alice) == [alice_chat]
    assert books(alice) == before


def test_an_import_that_fails_while_writing_leaves_nothing_behind(alice, alice_chat, monkeypatch):
    written = []

    def fail_on_the_second_chat(conversation_id, rows, created_at):
        written.append(conversation_id)
        if len(written) == 2:
            raise RuntimeError("the disk went away")
        insert(conversation_id, rows, created_at)

    insert = conversation_queries.insert_imported_turns
    monkeypatch.setattr(conversation_queries, "insert_imported_turns", fail_on_the_second_chat)
    with pytest.raises(RuntimeError):
        documents.import_chats(alice, json.dumps(many(chat(), chat(), chat())), max_message_chars=MAX_MESSAGE)
    assert chats_of(alice) == [alice_chat]
    assert db.database.execute_sql("SELECT COUNT(*) FROM imported_turns").fetchone()[0] == 0


def test_the_imported_turns_table_arrives_on_a_database_of_the_previous_schema(tmp_path, db_engine):
    if db_engine != "sqlite":
        pytest.skip("the migration itself is the same SQL on both engines (test_store compares their schemas)")
    path = tmp_path / "previous.db"
    db.open_database(path, migrate=False)
    db.apply_migrations(db.MIGRATIONS[:-1])
    db.database.execute_sql(
        "INSERT INTO users (id, username, password_hash, balance, created_at) VALUES (1, 'alice', 'x', 0, '2026-01-01')"
    )
    db.close_database()
    db.open_database(path)
    try:
        (chat_id,) = documents.import_chats(1, json.dumps(chat()), max_message_chars=MAX_MESSAGE).chat_ids
        assert [turn.prompt for turn in conversations.conversation_turns(1, chat_id)] == ["Hi"]
        assert db.check_integrity() == []
    finally:
        db.close_database()


# --- the sidebar's Import chat and the Account tab's Import chats ------------------------------


class TiersOnly:
    """The app's tiers, and no generation: an imported turn is refused before one would run."""

    def tiers(self):
        return [types.SimpleNamespace(tier="pro", label="Gemma pro", price=3, available=True, reason="")]

    def generate(self, *args, **kwargs):
        raise AssertionError("nothing is generated here")


@pytest.fixture
def app(settings, database):
    app = ChatApp(settings, TiersOnly())
    app.build()
    return app


def test_import_chat_opens_the_chat_and_lists_it_first(app, settings):
    request = signed_in_request(settings, "carol")
    text = json.dumps(chat(title="From my laptop", turn={"prompt": "Hi there"}))
    shown = app.import_chats(request, text, str(len(text)), "")
    assert shown["sidebar_notice"] == "Imported “From my laptop” (1 message)."
    assert shown["chatbot"][0] == {"role": "user", "content": "Hi there"}
    assert "Hello" in shown["chatbot"][1]["content"] and "Gemma mini · imported" in shown["chatbot"][1]["content"]
    assert "credit" not in shown["chatbot"][1]["content"] and shown["chat_id"] != ""
    assert 'title="From my laptop"' in shown["chat_list"] and "gc-open" in shown["chat_list"]
    assert "model" not in shown  # the chat's "mini" is not one of this app's tiers: the picker stays as it is
    # Regenerate and Edit last message cannot be pressed, and refuse if sent all the same.
    actions = app.action_state(request, "pro")
    assert not actions["regenerate_button"]["interactive"] and not actions["edit_button"]["interactive"]
    refused = "⚠ An imported message cannot be regenerated or edited; send a new message instead."
    assert app.edit_last(request)["chat_notice"] == refused
    assert shown_after(app.regenerate(request, "pro"))["chat_notice"] == refused
    assert ledger.get_balance(request.user_id).balance == settings.starting_balance


def test_import_refusals_are_shown_beside_the_button_that_chose_the_file(app, settings):
    request = signed_in_request(settings, "carol", accept_language="ru-RU,ru;q=0.9")
    too_large = str(documents.MAX_DOCUMENT_BYTES + 1)
    assert app.import_chats(request, "", too_large, "")["sidebar_notice"] == "⚠ Размер файла — 5.1 МБ; предел — 5 МБ."
    shown = app.import_chats_from_account(request, "{}", "2", "")
    assert shown == {"import_message": "⚠ Это не экспорт gemma-chat: его «format» — не gemma-chat.chat/1 и не gemma-chat.chats/1."}
    assert app.import_chats(request, "", "", "") == {}  # the chooser was cancelled: nothing happens
    assert chats_of(request.user_id) == []
    text = json.dumps(many(chat(title="One"), chat(title="Two")))
    shown = app.import_chats_from_account(request, text, str(len(text)), "")
    assert (shown["import_message"], shown["sidebar_notice"]) == ("", "Импортировано: 2 чата (2 сообщения).")
    with pytest.raises(Exception, match="log in"):
        app.import_chats(browser_request(None), text, str(len(text)), "")


def test_a_file_the_page_sends_fits_in_the_event_the_edge_accepts():
    from gemma_chat.ui import export
    from gemma_chat.web.edge import MAX_JSON_BODY

    # The file's text goes escaped inside the event: room for an export's quotes and newlines, and a
    # file that escapes to more (mostly quotes, say) counts as its escaped size.
    assert documents.MAX_DOCUMENT_BYTES < export.MAX_SENT_BYTES < MAX_JSON_BODY - 64 * 1024
    assert f"> {documents.MAX_DOCUMENT_BYTES})" in export.IMPORT_JS and f"> {export.MAX_SENT_BYTES})" in export.IMPORT_JS


def test_an_account_imports_a_bounded_number_of_messages_deleted_chats_included(alice, alice_chat, monkeypatch):
    """Importing costs no credits: without a bound, one free account could fill the disk the ledger writes to."""
    monkeypatch.setattr(documents, "MAX_IMPORTED_TURNS_PER_USER", 6)
    exported = json.dumps(documents.chat_document(alice, alice_chat))  # 4 turns
    first = documents.import_chats(alice, exported, max_message_chars=MAX_MESSAGE).chat_ids[0]
    conversations.delete_conversation(alice, first)  # its rows stay stored, so they still count
    chats_before, before = Conversation.select().count(), books(alice)
    with pytest.raises(ChatImportError) as refused:
        documents.import_chats(alice, exported, max_message_chars=MAX_MESSAGE)
    assert refused.value.message == "This account has imported 4 messages; an account can import at most 6."
    assert translated("ru", refused.value) == "Эта учётная запись уже импортировала 4 сообщения; можно не больше 6."
    assert Conversation.select().count() == chats_before and books(alice) == before
