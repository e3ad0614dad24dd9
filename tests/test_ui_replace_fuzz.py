"""Regenerate against anything a client can send (issue 11: ≥500 examples each); Edit last message in
test_ui_edit_fuzz.py, with the same checks (`ChatPages`).

Each example is a page doing a few chat actions in a row: the handlers under test once each, in a
drawn order, and a few others around them (send, Edit, New chat, opening another chat, the balance
running low, bob at his own page, a browser without a session). The tier, message and chatbot a
client posts are anything at all. Whatever happens: no exception but a popup with a clear message,
the held total back to zero, a charge only for an answer that took effect (the ledger adds up), the
replaced turn the one the page showed last, and nothing of the other user changed. The engine
answers "Answer number N." at once, so the examples test the handlers, not the model. And the
page's Regenerate and Edit (`action_state`) are enabled exactly when pressing them would run.
"""

from __future__ import annotations

import itertools
import warnings

import gradio as gr
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import browser_request, fuzz_examples, shown_after, signed_in_request
from gemma_chat.accounts import admin
from gemma_chat.billing import ledger
from gemma_chat.chats import conversations
from gemma_chat.backends.base import GenerationResult, TierStatus
from gemma_chat.store.db import database
from gemma_chat.ui import ChatApp

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=fuzz_examples(500), deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EDIT, CANCEL = "Edit last message", "Cancel edit"
PRICES = {"mini": 1, "pro": 3}  # demo_settings' tiers

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=200),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def mostly(usual, rare, percent: int = 80):
    """`usual` in `percent` of the draws, else `rare`: enough examples get past the first check."""
    return st.integers(0, 99).flatmap(lambda n: usual if n < percent else rare)


messages = mostly(
    st.one_of(st.text(min_size=1, max_size=60).filter(str.strip), st.sampled_from(["Hi", "Why?", "  again  "])),
    st.one_of(st.sampled_from(["", "   ", "a\x00b", "\ud800", "x" * 40_000]), anything),
)
tiers = mostly(st.sampled_from(["mini", "mini", "pro"]), anything)
chatbots = mostly(
    st.lists(st.fixed_dictionaries({"role": st.just("user"), "content": st.text(max_size=20)}), max_size=2), anything, 70
)
owners = mostly(st.just("alice"), st.just("bob"), 85)  # whose page it is
strangers = st.sampled_from(["nobody", "forged"])  # a browser without a session, or with a forged cookie
callers = mostly(st.just("alice"), st.one_of(st.just("bob"), strangers), 70)  # anyone, at any page
STEPS = {
    "send": lambda who: st.tuples(st.just("send"), who, tiers, messages, chatbots),
    "regenerate": lambda who: st.tuples(st.just("regenerate"), who, tiers),
    "edit": lambda who: st.tuples(st.just("edit"), who),
    "actions": lambda who: st.tuples(st.just("actions"), who, tiers),
}
AROUND = st.one_of(
    *(step(callers) for step in STEPS.values()),
    st.tuples(st.just("new_chat"), callers),
    st.tuples(st.just("open"), callers, st.integers(0, 5)),
    st.tuples(st.just("credits"), callers, st.sampled_from([0, 1, 2])),  # the balance runs low (each example refills it)
)


def a_page_doing(core: list[str]):
    """One user's page: the `core` handlers once each, in a drawn order, with up to two other actions
    (by anyone, a browser without a session too) among them."""
    ordered = st.tuples(owners, st.permutations(core)).flatmap(
        lambda drawn: st.tuples(*(STEPS[kind](mostly(st.just(drawn[0]), strangers, 92)) for kind in drawn[1]))
    )
    return st.tuples(ordered, st.lists(st.tuples(st.integers(0, len(core)), AROUND), max_size=2)).map(
        lambda drawn: insert_all(list(drawn[0]), drawn[1])
    )


def insert_all(steps: list, extras: list) -> list:
    for position, step in extras:
        steps.insert(position, step)
    return steps


class NumberedEngine:
    """The settings' tiers, always available; each answer is "Answer number N.", at once."""

    def __init__(self, settings):
        self.statuses = [
            TierStatus(tier=name, label=f"Numbered {name}", price=tier.price, available=True, reason="", is_demo=True,
                       max_tokens=tier.max_tokens, n_ctx=tier.n_ctx)
            for name, tier in settings.tiers.items()
        ]
        self.count = itertools.count(1)

    def tiers(self):
        return self.statuses

    def generate(self, tier, messages, *, stop=None, sampling=None):
        answer = f"Answer number {next(self.count)}."
        yield answer
        yield GenerationResult(answer, 1, 1, "stop", 0, 1, "numbered")


def figures(user_id: int, since: int) -> dict:
    """What the user would notice: balance, held credits, the ledger, and the turns on record after `since`."""
    balance = ledger.get_balance(user_id)
    total, entries = database.execute_sql(
        "SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM ledger_entries WHERE user_id = ?", (user_id,)
    ).fetchone()
    rows = database.execute_sql(
        "SELECT id, status, credits_charged, replaces_id, conversation_id, prompt FROM interactions"
        " WHERE user_id = ? AND id > ? ORDER BY id",
        (user_id, since),
    ).fetchall()
    return {"balance": balance.balance, "held": balance.held, "ledger": (total, entries), "interactions": rows}


def newest_interaction() -> int:
    return database.execute_sql("SELECT COALESCE(MAX(id), 0) FROM interactions").fetchone()[0]


def errors_logged() -> int:
    return database.execute_sql("SELECT COUNT(*) FROM error_events").fetchone()[0]


def shown_turns(request) -> tuple[int | None, list]:
    """The chat open in this browser's session, and its turns as the page shows them."""
    open_id = conversations.open_conversation_of(request.user_id, request.session_id)
    return open_id, conversations.conversation_turns(request.user_id, open_id) if open_id else []


def clear(message) -> None:
    assert isinstance(message, str) and message.strip(), repr(message)
    assert "Something went wrong" not in message, message  # the unexpected-error path: a bug


def run(action):
    """The action's outputs, its error popup and its warning popups; any other exception fails the test."""
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        try:
            outputs, error = action(), None
        except gr.Error as popup:
            outputs, error = None, popup.message
    popups = [str(w.message) for w in shown if issubclass(w.category, UserWarning)]
    for message in popups + ([error] if error else []):
        clear(message)
    return outputs, error, popups


def set_available(user_id: int, name: str, credits: int) -> None:
    """An administrator moves the balance (not a handler under test): to reach the refusals, and back."""
    change = credits - ledger.get_balance(user_id).available
    if change:
        admin.grant_credits(None, name, change)


class ChatPages:
    """alice's and bob's pages; runs chat actions as the pages would and checks each one."""

    def __init__(self, chat_settings):
        self.app = ChatApp(chat_settings, NumberedEngine(chat_settings))
        self.people = {name: signed_in_request(chat_settings, name) for name in ("alice", "bob")}
        for request in self.people.values():
            list(self.app.send(request, "mini", "First question", [], []))
            request.session_id = self.app.signed_in(request).session_id
        self.strangers = {"nobody": browser_request(None), "forged": browser_request("a forged token of the right length.....")}
        self.pending = {name: None for name in self.people}  # the edit each page waits to send: (chat, turn)
        self.seen = {"regenerated": 0, "edited": 0, "sent": 0, "refused": 0, "no session": 0} | {kind: 0 for kind in STEPS}

    def run_page(self, start: str, steps: list) -> None:
        """A fresh page (no edit waiting, credits to spend, a chat per `start`), then `steps`."""
        app = self.app
        for name, request in self.people.items():
            self.pending[name] = None
            app._editing.pop(request.session_id, None)
            if ledger.get_balance(request.user_id).available < 10:
                set_available(request.user_id, name, 1000)
            if start != "as it was":
                conversations.set_open_conversation(request.user_id, request.session_id, None)
            if start == "one turn":
                list(app.send(request, "mini", "A question", [], []))
        errors = errors_logged()
        for step in steps:
            self.act(*step)
        assert errors_logged() == errors  # never the unexpected-error path

    def act(self, kind, caller, *args) -> None:
        if caller in self.strangers:
            return self.refuse_stranger(kind, self.strangers[caller], args)
        app, request, seen = self.app, self.people[caller], self.seen
        other = self.people["bob" if caller == "alice" else "alice"]
        if kind == "credits":
            return set_available(request.user_id, caller, args[0])
        if kind == "open":
            mine = [c.id for c in conversations.list_conversations(request.user_id, 1, 10).rows]
            if mine:
                conversations.set_open_conversation(request.user_id, request.session_id, mine[args[0] % len(mine)])
            return
        since = newest_interaction()
        before, other_before = figures(request.user_id, since), figures(other.user_id, since)
        open_id, turns = shown_turns(request)
        last = turns[-1] if turns else None
        edit = self.pending[caller]
        applies = edit is not None and open_id == edit[0] and last is not None and last.id == edit[1]
        if kind == "regenerate":  # what the page offered just before: enabled only if it will take effect
            offered = app.action_state(request, args[0])["regenerate_button"]["interactive"]
            self.pending[caller] = edit if applies else None  # (an edit that no longer applies has ended)
        call = {
            "send": lambda: list(app.send(request, args[0], args[1], args[2], [])),
            "regenerate": lambda: list(app.regenerate(request, args[0])),
            "edit": lambda: app.edit_last(request),
            "actions": lambda: app.action_state(request, args[0]),
            "new_chat": lambda: app.new_chat(request),
        }[kind]
        outputs, error, popups = run(call)
        seen[kind] = seen.get(kind, 0) + 1

        after = figures(request.user_id, since)
        assert figures(other.user_id, since) == other_before  # the other user: untouched
        new_rows = after["interactions"]
        took_effect = [row for row in new_rows if row[1] in ("ok", "stopped")]
        charged = sum(row[2] for row in new_rows)
        assert after["held"] == 0 and after["balance"] == before["balance"] - charged
        assert after["ledger"] == (before["ledger"][0] - charged, before["ledger"][1] + (1 if charged else 0))
        assert all(row[1] == "refused" and row[2] == 0 for row in new_rows if row not in took_effect)
        new_open, new_turns = shown_turns(request)

        if kind in ("send", "regenerate"):
            replacing = kind == "regenerate" or applies
            if kind == "regenerate":
                assert offered == bool(took_effect), (offered, new_rows, outputs)
            if took_effect:
                (row,) = took_effect
                assert row[3] == (last.id if replacing else None)  # only the turn the page showed last
                if replacing:
                    assert [t.id for t in new_turns] == [t.id for t in turns[:-1]] + [row[0]]
                    assert new_turns[-1].prompt == (last.prompt if kind == "regenerate" else args[1].strip())
                else:
                    assert new_turns[-1].id == row[0] and len(new_turns) == (len(turns) + 1 if open_id else 1)
                seen["edited" if kind == "send" and replacing else "regenerated" if replacing else "sent"] += 1
            else:
                kept = [row[0] for row in new_rows if row[1] == "refused" and not replacing]
                if kept:  # a new message refused for credits: in the chat, marked refused, to send again
                    assert [t.id for t in new_turns] == ([t.id for t in turns] if open_id else []) + kept
                else:
                    assert [t.id for t in new_turns] == [t.id for t in turns]  # the chat on record as it was
                told = shown_after(outputs or []).get("chat_notice", "")
                assert error or popups or told.startswith("⚠ ")  # and the user was told why, beside the box
                if told:
                    clear(told)
                seen["refused"] += 1
            if kind == "send":
                self.pending[caller] = edit if applies and not took_effect else None
            return
        assert new_rows == [] and after == before  # the other handlers never charge or answer
        if kind == "edit":
            if edit is not None:  # a second press cancels
                assert outputs == {"edit_button": EDIT, "chat_notice": ""}
                self.pending[caller] = None
            elif last is not None:  # (no answer streams here: each handler ran to its end)
                assert outputs == {"message": last.prompt, "edit_button": CANCEL, "chat_notice": ""}
                self.pending[caller] = (open_id, last.id)
            else:
                assert outputs == {"chat_notice": "⚠ There is no message to edit yet."}
        elif kind == "actions":  # no answer streams here (each handler ran to its end), and none is imported
            price = PRICES.get(args[0]) if isinstance(args[0], str) else None
            label = f"Regenerate ({price} credit{'s' if price != 1 else ''})" if price else "Regenerate"
            paid = price is not None and ledger.get_balance(request.user_id).available >= price
            assert outputs == {
                "regenerate_button": gr.update(value=label, interactive=last is not None and paid),
                "edit_button": gr.update(value=CANCEL if applies else EDIT, interactive=last is not None),
            }
            if not applies:
                self.pending[caller] = None
        else:
            assert outputs["chatbot"] == [] and outputs["chat_id"] == "" and new_open is None

    def refuse_stranger(self, kind, request, args) -> None:
        """A browser without a live session: refused, and nobody's chat or credits change."""
        since = newest_interaction()
        before = {name: figures(page.user_id, since) for name, page in self.people.items()}
        call = {
            "send": lambda: list(self.app.send(request, args[0], args[1], args[2], [])),
            "regenerate": lambda: list(self.app.regenerate(request, args[0])),
            "edit": lambda: self.app.edit_last(request),
            "actions": lambda: self.app.action_state(request, args[0]),
            "new_chat": lambda: self.app.new_chat(request),
        }.get(kind)
        if call is None:
            return
        with pytest.raises(Exception, match="log in") as refused:  # a popup: gr.Error, or NotLoggedInError via the wiring
            call()
        assert isinstance(refused.value, gr.Error) or type(refused.value).__name__ == "NotLoggedInError"
        assert {name: figures(page.user_id, since) for name, page in self.people.items()} == before
        self.seen["no session"] += 1
        self.seen[kind] = self.seen.get(kind, 0) + 1

    def check_totals(self, core: list[str]) -> None:
        seen = self.seen
        assert all(seen[kind] >= 500 for kind in core), seen
        assert seen["refused"] >= 50 and seen["no session"] >= 50, seen
        assert ledger.verify_ledger() == []


@pytest.fixture
def pages(chat_settings):
    return ChatPages(chat_settings)


starts = st.sampled_from(["one turn", "no chat", "as it was", "as it was"])


def test_regenerate_takes_any_input_and_replaces_only_the_last_turn_charging_only_what_took_effect(pages):
    core = ["regenerate", "actions"]

    @FUZZ
    @given(start=starts, steps=a_page_doing(core))
    def example(start, steps):
        pages.run_page(start, steps)

    example()
    pages.check_totals(core)
    assert pages.seen["regenerated"] >= 150, pages.seen
