"""Local tiers in supervised worker processes: real workers, the real 270M, real signals.

Each crash test kills or breaks a real worker mid-answer and checks what a user would notice: the
turn fails with a clear message and costs nothing, the books verify, the other tier never stopped,
and the next answer on the crashed tier arrives after the restart.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time

import pytest

from gemma_chat.accounts import auth
from gemma_chat.billing import ledger
from gemma_chat.chats import turn
from gemma_chat.backends.cpu_features import RECORD_FILE, machine_key
from gemma_chat.config import CACHE_DIR_ENV, SIMULATE_AMX_CRASH_ENV
from gemma_chat.store.db import ErrorEvent
from gemma_chat.inference.engine import Engine, GenerationResult, Waiting
from gemma_chat.errors import ModelUnavailableError, WorkerCrashedError
from gemma_chat.ops.verify import verify_database
from tests.conftest import demo_settings
from tests.reliability.worker_faults import EXTRA_BUFFERS_WORK_ENV

WORKER_FAULTS = {"GEMMA_CHAT_WORKER_FAULT_INJECTION": "tests.reliability.worker_faults:install"}
STORY = [{"role": "user", "content": "Tell me a long story about a dragon who lives in a castle by the sea."}]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]

pytestmark = [pytest.mark.slow, pytest.mark.worker]


@pytest.fixture
def worker_env(monkeypatch):
    """The workers inherit this process's environment: turn the test-only fault hook on."""
    for key, value in WORKER_FAULTS.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def start_engine(settings, lines=None, **overrides) -> Engine:
    settings = dataclasses.replace(settings, **overrides)
    return Engine.load(settings, log=(lines.append if lines is not None else lambda line: None))


def answer(engine: Engine, tier: str, messages=QUESTION) -> GenerationResult:
    result = None
    for item in engine.generate(tier, messages):
        if isinstance(item, GenerationResult):
            result = item
    assert result is not None and result.text.strip()
    return result


def wait_for(predicate, timeout=60.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def state(engine: Engine, tier: str) -> str:
    return next(s.state for s in engine.tiers() if s.tier == tier)


def stream_until_text(generation) -> None:
    for item in generation:
        if isinstance(item, str):
            return
    raise AssertionError("no text")


@pytest.fixture
def engine(chat_settings, worker_env):
    engine = start_engine(chat_settings, worker_crash_window_s=300)
    yield engine
    engine.close()


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL], ids=["SIGSEGV", "SIGKILL"])
def test_a_worker_killed_mid_answer_fails_that_turn_only_and_restarts(chat_settings, engine, sig):
    user = auth.register_user(chat_settings, f"victim{sig.value}", "long enough pw")
    pro = engine.generate("pro", STORY)  # the other tier, mid-answer the whole time
    stream_until_text(pro)
    mini_pid = engine.backend("mini").worker_pid

    updates = []
    for update in turn.run_turn(chat_settings, engine, user.id, "mini", STORY[0]["content"]):
        updates.append(update)
        if update.status == "streaming" and len(updates) == 2:
            os.kill(mini_pid, sig)
    final = updates[-1]
    assert final.status == "error" and final.credits_charged == 0
    assert final.message.startswith("The model stopped unexpectedly. Nothing was charged. (error E-"), final.message
    account = ledger.get_balance(user.id)
    assert (account.balance, account.held) == (10, 0)
    assert verify_database(chat_settings) == []

    error = ErrorEvent.get(ErrorEvent.request_id == final.request_id)
    assert error.exception_type == "WorkerCrashedError"
    assert f"worker exited with {sig.name} (signal {sig.value})" in error.traceback

    rest = list(pro)  # the other tier was never interrupted
    assert isinstance(rest[-1], GenerationResult) and rest[-1].finish_reason in ("stop", "length")

    assert wait_for(lambda: state(engine, "mini") == "ready")
    assert engine.backend("mini").worker_pid != mini_pid
    assert answer(engine, "mini").text


def test_an_abort_in_the_worker_keeps_its_stderr_for_the_error_table(chat_settings, engine):
    user = auth.register_user(chat_settings, "aborted", "long enough pw")
    final = list(turn.run_turn(chat_settings, engine, user.id, "mini", "[fault:abort] Tell me about the sea."))[-1]
    assert final.status == "error" and final.credits_charged == 0 and final.answer  # text was shown, still free
    assert "The model stopped unexpectedly. Nothing was charged." in final.message
    error = ErrorEvent.get(ErrorEvent.request_id == final.request_id)
    assert "SIGABRT (signal 6)" in error.traceback and "GGML_ASSERT: simulated failed assertion" in error.traceback
    # The supervisor writes the worker's own record from its thread, maybe just after the turn ended.
    assert wait_for(lambda: ErrorEvent.select().where(ErrorEvent.location == "worker:mini").count() == 1)
    worker_row = ErrorEvent.get(ErrorEvent.location == "worker:mini")
    assert "SIGABRT" in worker_row.traceback
    assert ledger.get_balance(user.id).balance == 10 and verify_database(chat_settings) == []
    assert answer(engine, "mini").text


def test_waiting_users_see_the_restart_and_get_their_answer(chat_settings, engine):
    running = engine.generate("mini", [{"role": "user", "content": "[fault:hang] Tell me about the sea."}])
    stream_until_text(running)  # holds the tier, then stops producing tokens
    waiting = engine.generate("mini", QUESTION)
    assert next(waiting) == Waiting(1)
    os.kill(engine.backend("mini").worker_pid, signal.SIGSEGV)
    with pytest.raises(WorkerCrashedError):
        list(running)
    items = list(waiting)
    assert Waiting(1, restarting=True) in items  # shown while the worker restarted
    assert isinstance(items[-1], GenerationResult) and items[-1].text.strip()


def test_a_worker_killed_while_loading_is_restarted(chat_settings, worker_env):
    engine = Engine.start(chat_settings, log=lambda line: None)
    try:
        backend = engine.backend("mini")
        assert wait_for(lambda: backend.worker_pid is not None, step=0.005)
        first = backend.worker_pid
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: state(engine, "mini") == "ready")
        assert backend.worker_pid != first
        assert answer(engine, "mini").text
    finally:
        engine.close()


def test_repeated_crashes_make_the_tier_unavailable_until_an_admin_restarts_it(chat_settings, worker_env):
    engine = start_engine(chat_settings, worker_crash_limit=2)
    try:
        for crash in range(2):
            assert wait_for(lambda: state(engine, "mini") == "ready")
            with pytest.raises(WorkerCrashedError):
                list(engine.generate("mini", [{"role": "user", "content": "[fault:segv] Tell me about the sea."}]))
        assert wait_for(lambda: state(engine, "mini") == "crashed")
        mini = next(s for s in engine.tiers() if s.tier == "mini")
        assert not mini.available
        assert mini.reason.startswith("The model stopped 2 times within 5 minutes (last: SIGSEGV (signal 11))")
        with pytest.raises(ModelUnavailableError):
            next(engine.generate("mini", QUESTION))
        assert answer(engine, "pro").text  # the other tier is untouched

        engine.restart_tier("mini")
        assert wait_for(lambda: state(engine, "mini") == "ready")
        assert answer(engine, "mini").text
    finally:
        engine.close()


@pytest.fixture
def new_machine(worker_env, tmp_path):
    """A machine that has never run the probe: its own empty cache (the suite shares one otherwise)."""
    worker_env.setenv(CACHE_DIR_ENV, str(tmp_path / "machine-cache"))
    return tmp_path / "machine-cache"


def test_extra_buffers_that_crash_the_probe_are_turned_off_and_remembered(chat_settings, worker_env, new_machine):
    worker_env.setenv(SIMULATE_AMX_CRASH_ENV, "1")  # as on the AMX Xeon: the first decode faults
    lines: list[str] = []
    engine = start_engine(chat_settings, lines)
    try:
        assert lines[0] == "CPU extra buffers: on — being checked on this CPU"
        assert any("crashed with CPU extra buffers on (SIGSEGV (signal 11)); restarting with them off" in l for l in lines)
        assert engine.extra_buffers.enabled is False
        assert engine.extra_buffers.reason.startswith("off — they crashed on this CPU")
        assert answer(engine, "mini").text and answer(engine, "pro").text
        # Expected on such a CPU, and said in the log: not an error for the admin to chase.
        assert ErrorEvent.select().where(ErrorEvent.location.startswith("worker:")).count() == 0
    finally:
        engine.close()
    record = json.loads((chat_settings.data_dir / RECORD_FILE).read_text())[machine_key()]
    assert record["works"] is False and "SIGSEGV" in record["detail"]

    starts_with_them_off_without_a_crash(chat_settings)  # the next start uses what was learnt: no probe


def test_a_machine_that_crashed_once_starts_every_new_data_dir_with_them_off(tmp_path, worker_env, new_machine):
    worker_env.setenv(SIMULATE_AMX_CRASH_ENV, "1")
    first, second = demo_settings(tmp_path / "first"), demo_settings(tmp_path / "second")
    lines: list[str] = []
    start_engine(first, lines).close()
    assert any("crashed with CPU extra buffers on" in line for line in lines)
    record = json.loads((new_machine / RECORD_FILE).read_text())[machine_key()]
    assert record["works"] is False and "SIGSEGV" in record["detail"]

    starts_with_them_off_without_a_crash(second)  # another data dir (another test, another user of this machine)


def starts_with_them_off_without_a_crash(settings) -> None:
    lines: list[str] = []
    engine = start_engine(settings, lines)
    try:
        assert lines[0].startswith("CPU extra buffers: off — they crashed on this CPU (checked ")
        assert not any("crashed with CPU extra buffers" in line for line in lines)
        assert answer(engine, "mini").text
    finally:
        engine.close()


def test_extra_buffers_that_work_are_remembered_as_on(chat_settings, worker_env, new_machine):
    worker_env.setenv(EXTRA_BUFFERS_WORK_ENV, "1")  # the probe passes, whatever this CPU does
    lines: list[str] = []
    engine = start_engine(chat_settings, lines)
    engine.close()
    assert lines[0] == "CPU extra buffers: on — being checked on this CPU"
    assert not any("crashed with CPU extra buffers" in line for line in lines)
    assert json.loads((chat_settings.data_dir / RECORD_FILE).read_text())[machine_key()]["works"] is True
    assert json.loads((new_machine / RECORD_FILE).read_text())[machine_key()]["works"] is True
    lines.clear()
    start_engine(chat_settings, lines, cpu_extra_buffers="auto").close()
    assert lines[0].startswith("CPU extra buffers: on — they work on this CPU (checked ")
    lines.clear()
    start_engine(chat_settings, lines, cpu_extra_buffers="off").close()
    assert lines[0] == "CPU extra buffers: off (set in the settings)"


def test_stop_reaches_the_worker_during_a_long_prefill(tmp_path):
    settings = demo_settings(tmp_path / "data")
    long_context = {name: dataclasses.replace(tier, n_ctx=4096, max_tokens=8) for name, tier in settings.tiers.items()}
    engine = start_engine(settings, tiers=long_context)
    try:
        words = "river stone lantern orchard copper meadow violin harbor".split()
        prompt = " ".join(words[(i * 7) % len(words)] + str(i % 13) for i in range(1300))
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        items = list(engine.generate("mini", [{"role": "user", "content": prompt}], stop=stop))
        assert items[-1].finish_reason == "stopped" and items[-1].completion_tokens == 0
        assert time.monotonic() - started < 2.0  # the prefill alone takes several seconds here
        assert answer(engine, "mini").text  # the worker is usable at once
    finally:
        engine.close()
