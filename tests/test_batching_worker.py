"""Several users on one local tier at once, through real worker processes, the engine and the ledger.

The tier has 4 slots: 4 answers stream together, each as it would alone; Stop or a closed stream
ends one without touching the others; a crash fails every answer in flight, charges nothing, and the
restarted worker serves; with credits for 3, exactly 3 of 10 simultaneous turns are charged.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

import pytest

from gemma_chat.accounts import auth
from gemma_chat.billing import ledger
from gemma_chat.chats import turn as chat_turn
from gemma_chat.inference.engine import Engine, GenerationResult
from gemma_chat.errors import WorkerCrashedError
from gemma_chat.ops.verify import verify_database
from tests.conftest import demo_settings

QUESTIONS = [
    "What is the capital of France?",
    "Tell me a long story about a dragon who lives in a castle by the sea.",
    "Why is the sky blue?",
    "How do bees make honey?",
]

pytestmark = [pytest.mark.slow, pytest.mark.worker]  # real workers: .ci/run runs them on the simulated AMX CPU too


def four_slot_settings(settings, **tier_overrides):
    """Both tiers greedy (repeatable answers) with 4 slots; only mini is started."""
    values = {"parallel": 4, "temperature": 0.0, "max_tokens": 32, **tier_overrides}
    mini = dataclasses.replace(settings.tiers["mini"], **values)
    return dataclasses.replace(settings, tiers={"mini": mini})


@pytest.fixture(scope="module")
def engine(tmp_path_factory, bundled_gguf):
    engine = Engine.load(four_slot_settings(demo_settings(tmp_path_factory.mktemp("batching"))), log=lambda line: None)
    yield engine
    engine.close()


def drain(generation) -> tuple[str, GenerationResult]:
    text, result = "", None
    for item in generation:
        if isinstance(item, str):
            text += item
        elif isinstance(item, GenerationResult):
            result = item
    return text, result


def at_once(engine: Engine, questions, stops=None) -> list[tuple[str, GenerationResult]]:
    results: list = [None] * len(questions)
    stops = stops or [None] * len(questions)

    def ask(index: int) -> None:
        results[index] = drain(engine.generate("mini", [{"role": "user", "content": questions[index]}], stop=stops[index]))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_the_tier_has_four_slots_and_four_streams_give_their_solo_answers(engine):
    (status,) = engine.tiers()
    assert status.slots == 4
    solo = [drain(engine.generate("mini", [{"role": "user", "content": q}])) for q in QUESTIONS]
    together = at_once(engine, QUESTIONS)
    for (text, result), (solo_text, solo_result) in zip(together, solo):
        assert text == result.text == solo_text and result.text.strip()
        assert result.completion_tokens == solo_result.completion_tokens
        assert result.queued_ms < 1000  # none of the four waited for another's answer


def test_closing_one_of_four_streams_leaves_the_others_unchanged(engine):
    solo = {i: drain(engine.generate("mini", [{"role": "user", "content": q}]))[0] for i, q in enumerate(QUESTIONS)}
    generations = [engine.generate("mini", [{"role": "user", "content": q}]) for q in QUESTIONS]
    outcomes: dict[int, str] = {}

    def read(index: int) -> None:
        if index == 1:  # the browser tab of the story's reader closes after its first words
            for item in generations[1]:
                if isinstance(item, str):
                    generations[1].close()
                    outcomes[1] = "closed"
                    return
        outcomes[index] = drain(generations[index])[0]

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert outcomes[1] == "closed"
    for index in (0, 2, 3):
        assert outcomes[index] == solo[index]
    # the closed stream's slot is free again: four more at once all run
    assert all(result.queued_ms < 1000 for _, result in at_once(engine, QUESTIONS))


def test_stop_of_one_of_four_ends_it_and_the_others_finish(engine):
    stops = [None, threading.Event(), None, None]
    threading.Timer(0.3, stops[1].set).start()
    results = at_once(engine, QUESTIONS, stops)
    assert results[1][1].finish_reason == "stopped"
    assert all(results[i][1].finish_reason in ("stop", "length") for i in (0, 2, 3))


def test_a_returning_conversation_reuses_its_prefix_after_another_users_turn(engine):
    story = [{"role": "user", "content": QUESTIONS[1]}]
    first_text, first = drain(engine.generate("mini", story))
    drain(engine.generate("mini", [{"role": "user", "content": "Name three colours of the rainbow."}]))
    follow = [*story, {"role": "assistant", "content": first_text}, {"role": "user", "content": "What happened next?"}]
    _, second = drain(engine.generate("mini", follow))
    assert second.cache == "slot"
    assert second.prompt_tokens_reused >= first.prompt_tokens
    assert second.prompt_tokens - second.prompt_tokens_reused < 30  # only the new suffix was prefilled


# --- crashes and billing, through the chat turn ----------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV], ids=["SIGKILL", "SIGSEGV"])
def test_a_crash_with_four_answers_in_flight_fails_all_four_and_charges_nothing(chat_settings, sig, monkeypatch):
    # The worker takes 0.15 s per delta and ignores the stop strings: all four are still answering when it dies.
    monkeypatch.setenv("GEMMA_CHAT_WORKER_FAULT_INJECTION", "tests.reliability.worker_faults:install")
    settings = four_slot_settings(chat_settings, max_tokens=200)
    engine = Engine.load(settings, log=lambda line: None)
    try:
        users = [auth.register_user(settings, f"user{i}", "long enough pw") for i in range(4)]
        streaming: set[int] = set()
        finals: dict[int, chat_turn.TurnUpdate] = {}

        def turn(index: int) -> None:
            message = f"[fault:slow] [fault:endless] Count from one to a hundred in words ({index})."
            for update in chat_turn.run_turn(settings, engine, users[index].id, "mini", message):
                if update.status == "streaming":
                    streaming.add(index)
                finals[index] = update

        threads = [threading.Thread(target=turn, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while len(streaming) < 4 and time.monotonic() < deadline:  # all four are mid-answer
            time.sleep(0.01)
        assert len(streaming) == 4 and not any(f.final for f in finals.values())
        pid = engine.backend("mini").worker_pid
        os.kill(pid, sig)
        for thread in threads:
            thread.join(60)

        for index, user in enumerate(users):
            final = finals[index]
            assert final.status == "error" and final.credits_charged == 0, final
            assert "The model stopped unexpectedly. Nothing was charged." in final.message
            account = ledger.get_balance(user.id)
            assert (account.balance, account.held) == (10, 0)
        assert verify_database(settings) == []
        from gemma_chat.store.db import ErrorEvent

        per_request = ErrorEvent.select().where(ErrorEvent.location == "chat:mini")
        assert sorted(e.request_id for e in per_request) == sorted(finals[i].request_id for i in range(4))

        deadline = time.monotonic() + 60
        while engine.tiers()[0].state != "ready" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.backend("mini").worker_pid != pid
        final = list(chat_turn.run_turn(settings, engine, users[0].id, "mini", QUESTIONS[0]))[-1]
        assert final.status == "ok" and final.credits_charged == 1
    finally:
        engine.close()


@pytest.mark.both_engines
def test_ten_turns_at_once_with_credits_for_three_charge_exactly_three(chat_settings, db_engine, engine):
    user = auth.register_user(dataclasses.replace(chat_settings, starting_balance=3), "spender", "long enough pw")
    assert ledger.get_balance(user.id).balance == 3

    finals: list = []
    lock = threading.Lock()

    def turn() -> None:
        final = list(chat_turn.run_turn(chat_settings, engine, user.id, "mini", QUESTIONS[2]))[-1]
        with lock:
            finals.append(final)

    threads = [threading.Thread(target=turn) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    statuses = sorted(f.status for f in finals)
    assert statuses.count("ok") == 3 and statuses.count("refused") + statuses.count("busy") == 7, statuses
    assert sum(f.credits_charged or 0 for f in finals) == 3
    account = ledger.get_balance(user.id)
    assert (account.balance, account.held) == (0, 0)
    assert verify_database(chat_settings) == []
