"""Faults in a running app, over HTTP: a model that fails mid-answer, a locked database, a broken model file.

Model faults come from the fault-injecting engine (tests/reliability/faults.py) that the app loads
through its GEMMA_CHAT_FAULT_INJECTION test hook; a prompt too long for the context is genuine.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time

import pytest

from conftest import MODEL_CACHE
from gemma_chat.inference.model_files import BUNDLED_FILE_NAME

from .conftest import FAULTS_HOOK, balance, query, session, signed_up, snapshot, start_app, verify

pytestmark = pytest.mark.slow

BUSY_TIMEOUT_MS = 400
ERROR_ID = re.compile(r"\(error (E-[0-9A-F]{8})\)")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    running = start_app(tmp_path_factory.mktemp("faults"), GEMMA_CHAT_BUSY_TIMEOUT_MS=str(BUSY_TIMEOUT_MS), **FAULTS_HOOK)
    yield running
    running.stop()


@pytest.mark.parametrize(
    "prompt, shown, exception_type, in_traceback",
    [
        ("[fault:raise] Tell me about the sea.", "The model failed to answer.", "RuntimeError", "injected fault: the model crashed"),
        ("[fault:decode] Tell me about the sea.", "The model failed while generating; please try again.", "GenerationError", "llama_decode returned -3"),
        ("word " * 1500, "Your message is too long for", "ContextTooLongError", "> n_ctx 1024"),
    ],
    ids=["model-raises-mid-stream", "llama-decode-error", "prompt-beyond-context"],
)
def test_a_failing_model_charges_nothing_shows_an_error_id_and_logs_the_details(app, request, prompt, shown, exception_type, in_traceback):
    username = request.node.callspec.id  # e.g. "llama-decode-error"
    client = signed_up(app, username)
    reply = client.chat("mini", prompt)

    assert reply.charged == 0 and reply.balance == 10, reply.text
    message = reply.text.split("\n\n")[-2]  # the line above the footer
    assert message.startswith(shown) and "Nothing was charged." in message and len(message) < 300, message
    assert "Traceback" not in reply.text and "llama_decode" not in reply.text
    error_id = ERROR_ID.search(message).group(1)

    (location, kind, traceback, request_id), = query(
        app.data_dir, "SELECT location, exception_type, traceback, request_id FROM error_events WHERE error_id = ?", (error_id,)
    )
    assert location == "chat:mini" and kind == exception_type
    assert traceback.startswith("Traceback (most recent call last)") and in_traceback in traceback
    (status, charged, logged_error), = query(
        app.data_dir, "SELECT status, credits_charged, error_id FROM interactions WHERE request_id = ?", (request_id,)
    )
    assert (status, charged, logged_error) == ("error", 0, error_id)
    assert query(app.data_dir, "SELECT status, release_reason FROM holds WHERE request_id = ?", (request_id,)) == [("released", "error")]
    assert balance(app.data_dir, username) == (10, 0)
    assert verify(app.data_dir) == []


@contextlib.contextmanager
def database_locked(data_dir, seconds_at_least: float):
    """Another process holds SQLite's write lock (readers still read, as WAL allows)."""
    blocker = sqlite3.connect(data_dir / "gemma_chat.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    began = time.monotonic()
    try:
        yield
    finally:
        time.sleep(max(0.0, seconds_at_least - (time.monotonic() - began)))
        blocker.execute("ROLLBACK")
        blocker.close()


def test_a_database_locked_longer_than_the_busy_timeout_fails_cleanly_with_a_retry_message(app):
    client = signed_up(app, "locked")
    before = snapshot(app.data_dir)
    with database_locked(app.data_dir, BUSY_TIMEOUT_MS / 1000 * 3):
        chat = client.chat("mini", "What is the capital of France?")
        top_up = client.top_up(5)
        registration = session(app).register("newcomer")
        login = session(app).login("locked")
        wrong_login = session(app).login("locked", "wrong password")
    after = snapshot(app.data_dir)

    retry = "The database is busy; nothing was changed. Please try again."
    assert not chat.charged and retry in chat.text, chat.text  # said beside the box, no price line
    assert top_up == f"⚠ {retry}"
    assert registration == retry
    assert login == retry
    assert wrong_login == retry
    assert after == before  # no partial rows: no hold, no turn, no entry, no user, no error row
    # The same requests succeed once the lock is gone.
    assert client.chat("mini", "What is the capital of France?").charged == 1
    assert "Added 5 credits" in client.top_up(5)
    assert session(app).register("newcomer") == "" and session(app).login("locked") == ""
    assert verify(app.data_dir) == []


def test_a_database_locked_through_the_end_of_an_answer_charges_nothing_and_leaves_no_hold(app):
    """The lock comes after the hold, while the model answers, and outlasts settlement's retries."""
    client = signed_up(app, "midlock")
    started, finished = threading.Event(), {}
    thread = threading.Thread(
        target=lambda: finished.update(reply=client.chat("mini", "[fault:slow] Tell me about the sea.", on_update=lambda _: started.set()))
    )
    thread.start()
    assert started.wait(30)  # held: the answer takes at least 4 s more
    with database_locked(app.data_dir, 7.0):
        thread.join(30)
        assert not thread.is_alive(), "the request hung on the locked database"
    reply = finished["reply"]
    assert reply.charged == 0 and "database is busy" in reply.text and "Nothing was charged; please try again" in reply.text, reply.text
    deadline = time.monotonic() + 15  # once the lock is gone, the hold is released without a restart
    while balance(app.data_dir, "midlock") != (10, 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert balance(app.data_dir, "midlock") == (10, 0)
    (status, charged), = query(
        app.data_dir, "SELECT i.status, i.credits_charged FROM interactions i JOIN users u ON u.id = i.user_id WHERE u.username = 'midlock'"
    )
    assert (status, charged) == ("error", 0)
    assert verify(app.data_dir) == []


def broken_model_app(tmp_path, case: str):
    """Strict models: mini is the real 270M, or is broken; pro is the real 270M, or is broken."""
    real = MODEL_CACHE / BUNDLED_FILE_NAME
    models = tmp_path / "models"
    models.mkdir()
    broken = models / "broken.gguf"
    if case == "deleted":
        broken.touch()
        broken.unlink()
    elif case == "not-a-gguf":
        broken.write_bytes(b"\x7fELF" + bytes(range(256)) * 16)
    elif case == "truncated":
        with real.open("rb") as source:
            broken.write_bytes(source.read(60_000_000))  # the header is whole, the weights are not
    broken_tier = "mini" if case == "truncated" else "pro"
    working_tier = "pro" if broken_tier == "mini" else "mini"
    env = {
        "GEMMA_CHAT_STRICT_MODELS": "1",
        f"GEMMA_CHAT_{broken_tier.upper()}_MODEL_FILE": str(broken),
        f"GEMMA_CHAT_{working_tier.upper()}_MODEL_FILE": str(real),
        "GEMMA_CHAT_PRO_REQUIRED_QUANTIZATION": "",
        "GEMMA_CHAT_MINI_DISPLAY_NAME": "Mini test model",
        "GEMMA_CHAT_PRO_DISPLAY_NAME": "Pro test model",
    }
    return start_app(tmp_path / "app", **env), broken_tier, working_tier


@pytest.mark.parametrize(
    "case, reason",
    [
        ("deleted", "not found"),
        ("not-a-gguf", "is not a valid GGUF file"),
        ("truncated", "Could not load broken.gguf"),
    ],
)
def test_a_broken_model_file_makes_its_tier_unavailable_with_the_reason_and_the_other_serves(tmp_path, case, reason):
    app, broken, working = broken_model_app(tmp_path, case)
    try:
        client = session(app)
        outputs = client.sign_in_outputs("alice", register=True)
        model, notes = outputs[7], outputs[8]  # the reloaded page's load event
        assert [value for _, value in model["choices"]] == [working]
        label = f"{broken.capitalize()} test model"
        assert notes.startswith(f"{label} is not available:") and reason in notes, notes
        # Not offered, so the page cannot send it; a client that does is refused before anything runs.
        refused = client.chat(broken, "What is the capital of France?")
        assert not refused.outcome.ok and f"{broken} is not in the list of choices" in refused.text, refused.text
        answered = client.chat(working, "What is the capital of France?")
        assert answered.charged == (1 if working == "mini" else 3), answered.text
        assert "unavailable" in app.log_path.read_text()
    finally:
        app.stop()
