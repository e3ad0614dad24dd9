"""The version arrows' callback (ui/versions.py) in-process: ‹ and › show an answer's versions in place,
charge nothing, and show only the user's own open chat. The engine answers "Answer number N." at once."""

from __future__ import annotations

import re

import pytest

from conftest import browser_request, shown_after, signed_in_request
from gemma_chat.billing import ledger
from gemma_chat.errors import GemmaChatError
from gemma_chat.store.db import Interaction
from gemma_chat.ui import ChatApp, owned_by
from test_ui_replace_fuzz import NumberedEngine


@pytest.fixture
def app(chat_settings):
    app = ChatApp(chat_settings, NumberedEngine(chat_settings))
    app.build()
    return app


def arrow(bubble: str, mark: str) -> str | None:
    """The version an arrow of the bubble links to ("#gc-version-12"), None when it is not a link."""
    found = re.search(re.escape(f"[{mark}](") + r'(#gc-version-\d+) "', bubble)
    return found.group(1) if found else None


def answer(shown: dict) -> str:
    return shown["chatbot"][-1]["content"]


def test_paging_shows_the_earlier_answer_in_place_and_back_and_charges_nothing(app):
    session = signed_in_request(app.settings, "alice")
    shown_after(app.send(session, "mini", "Name a colour.", [], []))
    regenerated = shown_after(app.regenerate(session, "mini"))
    assert "Answer number 2." in answer(regenerated) and "2/2" in answer(regenerated)
    assert arrow(answer(regenerated), "›") is None and arrow(answer(regenerated), "‹")
    balance, turns = ledger.get_balance(session.user_id).balance, Interaction.select().count()

    back = app.show_version(session, arrow(answer(regenerated), "‹") + ":1", regenerated["shown_versions"])
    assert "Answer number 1." in answer(back) and "1/2" in answer(back) and back["chat_notice"] == ""
    assert back["chatbot"][0]["content"] == "Name a colour."  # that version's message
    assert arrow(answer(back), "‹") is None and owned_by(session.user_id, back["shown_versions"]) != []
    forward = app.show_version(session, arrow(answer(back), "›") + ":2", back["shown_versions"])
    assert "Answer number 2." in answer(forward) and "2/2" in answer(forward)
    assert owned_by(session.user_id, forward["shown_versions"]) == []

    assert (ledger.get_balance(session.user_id).balance, Interaction.select().count()) == (balance, turns)
    reloaded = app.restore(session)["chatbot"][-1]["content"]  # a reload shows the latest
    assert "Answer number 2." in reloaded and "2/2" in reloaded


def test_a_page_keeps_each_answers_choice_and_a_replacement_starts_afresh(app):
    session = signed_in_request(app.settings, "alice")
    shown_after(app.send(session, "mini", "One.", [], []))
    first = answer(shown_after(app.regenerate(session, "mini")))  # Answer number 2, 2/2
    second = shown_after(app.send(session, "mini", "Two.", [], []))
    paged = app.show_version(session, arrow(first, "‹"), second.get("shown_versions", []))
    assert "Answer number 1." in paged["chatbot"][1]["content"]
    again = shown_after(app.regenerate(session, "mini"))  # the second turn: the chat is shown afresh
    assert "Answer number 2." in again["chatbot"][1]["content"] and "2/2" in answer(again)
    assert owned_by(session.user_id, again["shown_versions"]) == []
    both = app.show_version(session, arrow(answer(again), "‹"), again["shown_versions"])
    assert "Answer number 2." in both["chatbot"][1]["content"] and "Answer number 3." in answer(both)


def test_a_version_of_another_chat_or_user_or_made_up_shows_nothing(app):
    alice = signed_in_request(app.settings, "alice")
    bob = signed_in_request(app.settings, "bob")
    shown_after(app.send(bob, "mini", "Bob's question.", [], []))
    bobs = answer(shown_after(app.regenerate(bob, "mini")))
    shown_after(app.send(alice, "mini", "Alice's question.", [], []))
    mine = answer(shown_after(app.regenerate(alice, "mini")))
    for value in (arrow(bobs, "‹"), None, 12, "#gc-version-", "#gc-version-abc", "#gc-version-" + "9" * 80, "open:1"):
        refused = app.show_version(alice, value, [])
        assert set(refused) == {"chat_notice"} and "no longer in this chat" in refused["chat_notice"], value
    forged = app.show_version(alice, arrow(mine, "‹"), {"user_id": bob.user_id, "rows": [10**6]})  # bob's State
    assert "Answer number 3." in answer(forged)  # alice's earlier answer; the forged choice is ignored
    with pytest.raises(GemmaChatError):
        app.show_version(browser_request(None), arrow(mine, "‹"), [])  # a browser without a session


def test_regenerate_in_an_imported_chat_keeps_every_imported_turn_whose_number_it_shares(app):
    """Imported turns are numbered in their own table: imported turn 1 and the chat's own turn 1 meet
    on a fresh database, and Regenerate of the latter must not take the former off the screen."""
    import json

    from gemma_chat.chats import documents

    session = signed_in_request(app.settings, "alice")
    document = json.dumps({"format": documents.FORMAT, "title": "From elsewhere", "turns": [
        {"prompt": f"Old question {n}.", "answer": f"Old answer {n}.", "status": "ok", "model": "Elsewhere"} for n in (1, 2)
    ]})
    opened = app.import_chats(session, document, str(len(document)), "")
    assert [m["content"] for m in opened["chatbot"]][0::2] == ["Old question 1.", "Old question 2."]
    shown_after(app.send(session, "mini", "New question.", opened["chatbot"], []))
    assert Interaction.select().count() == 1  # the chat's own turn 1: the number of the first imported one
    regenerated = shown_after(app.regenerate(session, "mini"))
    assert [m["content"] for m in regenerated["chatbot"]][0::2] == ["Old question 1.", "Old question 2.", "New question."]
    assert "Old answer 1." in regenerated["chatbot"][1]["content"] and "2/2" in answer(regenerated)


def test_a_refused_turn_offers_retry_only_when_it_was_refused_here():
    """Retry of an imported turn is refused (it is not an interaction), so its bubble does not offer one."""
    from gemma_chat.store.conversation_queries import Turn
    from gemma_chat.ui.transcript import stored_bubble

    here = Turn(7, "Hello?", "", "refused", "Gemma", 0, None, None)
    imported = Turn(7, "Hello?", "", "refused", "Gemma", 0, None, None, imported=True)
    for language in ("en", "ru"):
        assert "↻" in stored_bubble(here, language)
        assert "↻" not in stored_bubble(imported, language) and stored_bubble(imported, language) != stored_bubble(here, language)
