"""A model worker dies under the running app: the app keeps serving, the turn is free, the books are exact.

The app is `python main.py` in a subprocess and the clients speak HTTP; the worker is killed with a
real signal from outside (SIGSEGV as llama.cpp's faults do, SIGKILL as the OOM killer does) or made
to call os.abort() by the test-only worker hook (tests/reliability/worker_faults.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import psutil
import pytest

from .conftest import FAULTS_HOOK, query, signed_up, start_app, verify

pytestmark = pytest.mark.slow


def worker_pid(app, tier: str, timeout: float = 60.0) -> int:
    """The pid of the app's live worker for `tier` (its command line names the tier)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(app.process.pid).children():
            try:
                command = child.cmdline()
            except psutil.NoSuchProcess:
                continue
            if "gemma_chat.backends.worker" in command and command[-1] == tier and child.status() != psutil.STATUS_ZOMBIE:
                return child.pid
        time.sleep(0.05)
    raise AssertionError(f"no worker for {tier}")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    # Three crashes in a row here; parking a tier after repeated crashes is tests/test_local_backend.py's.
    running = start_app(tmp_path_factory.mktemp("worker-crash-app"), GEMMA_CHAT_WORKER_CRASH_LIMIT="10", **FAULTS_HOOK)
    yield running
    running.stop()


@pytest.mark.parametrize("how", ["SIGSEGV", "SIGKILL", "abort"])
def test_a_worker_dying_mid_answer_leaves_the_app_serving_and_the_turn_uncharged(app, how):
    victim, bystander = signed_up(app, f"victim-{how.lower()}"), signed_up(app, f"bystander-{how.lower()}")
    mini = worker_pid(app, "mini")
    pro_reply: dict = {}
    pro_thread = threading.Thread(target=lambda: pro_reply.update(reply=bystander.chat("pro", "[fault:slow] Tell me about the sea.")))
    pro_thread.start()  # the other tier answers the whole time

    streaming = threading.Event()
    if how == "abort":
        reply = victim.chat("mini", "[fault:abort] Tell me about the sea.")
    else:
        killer = threading.Thread(target=lambda: streaming.wait(30) and os.kill(mini, getattr(signal, how)))
        killer.start()
        reply = victim.chat("mini", "[fault:slow] Tell me about the sea.", on_update=lambda _: streaming.set())
        killer.join()

    assert reply.charged == 0 and reply.balance == 10, reply.text
    assert "The model stopped unexpectedly. Nothing was charged. (error E-" in reply.text, reply.text
    assert httpx.get(app.url, timeout=10).status_code == 200  # the app itself never went down

    pro_thread.join(60)
    assert pro_reply["reply"].charged == 3, pro_reply["reply"].text  # never interrupted

    signal_name = "SIGABRT" if how == "abort" else how
    (detail,) = query(
        app.data_dir,
        "SELECT e.traceback FROM error_events e JOIN interactions i ON i.error_id = e.error_id "
        "JOIN users u ON u.id = i.user_id WHERE u.username = ?", (f"victim-{how.lower()}",),
    )[0]
    assert f"worker exited with {signal_name}" in detail
    assert query(app.data_dir, "SELECT COUNT(*) FROM holds WHERE status = 'active'") == [(0,)]
    assert verify(app.data_dir) == []

    again = victim.chat("mini", "What is the capital of France?")  # the restarted worker answers
    assert again.charged == 1 and again.balance == 9, again.text
    assert worker_pid(app, "mini") != mini
