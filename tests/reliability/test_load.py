"""Load and concurrency over HTTP: many sessions at once against one running app, then the books.

What each client was told (charged N credits, added N credits, refused) is tallied on the client
side and must agree exactly with the database, the interaction log and the admin report.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import FAULTS_HOOK, balance, query, scalar, session, signed_up, start_app, verify
from .faults import SLOW_MIN_S

pytestmark = pytest.mark.slow

STARTING = 3


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """Short answers (4 tokens) and a queue long enough for every request: nothing is turned away busy."""
    running = start_app(
        tmp_path_factory.mktemp("load"),
        GEMMA_CHAT_STARTING_BALANCE=str(STARTING),
        GEMMA_CHAT_QUEUE_SIZE="64",
        GEMMA_CHAT_MINI_MAX_TOKENS="4",
        GEMMA_CHAT_PRO_MAX_TOKENS="4",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(app):
    return signed_up(app, "admin")  # the first account is the administrator


def at_once(functions, workers: int | None = None):
    """Run every function in its own thread, released together; results in order."""
    start = threading.Barrier(min(len(functions), workers or len(functions)))

    def run(function):
        try:
            start.wait(timeout=60)
        except threading.BrokenBarrierError:
            pass
        return function()

    with ThreadPoolExecutor(max_workers=workers or len(functions)) as pool:
        return list(pool.map(run, functions))


def test_ten_pro_requests_at_once_with_credits_for_one_charge_exactly_one(app, admin):
    first = signed_up(app, "solo")
    sessions = [first] + [session(app) for _ in range(9)]
    for client in sessions[1:]:
        assert client.login("solo") == ""
    assert balance(app.data_dir, "solo") == (3, 0)

    replies = at_once([lambda c=c: c.chat("pro", "Name a planet.") for c in sessions])

    answered = [r for r in replies if r.charged == 3]
    refused = [r for r in replies if r.outcome.ok and not r.charged]  # kept in the chat, unbilled: no price line
    assert len(answered) == 1 and len(refused) == 9, [r.text for r in replies]
    for reply in refused:
        assert "Not enough credits" in reply.text and "costs 3 credits" in reply.text, reply.text
    assert balance(app.data_dir, "solo") == (0, 0)
    statuses = Counter(s for (s,) in query(app.data_dir, "SELECT status FROM interactions i JOIN users u ON u.id = i.user_id WHERE u.username = 'solo'"))
    assert statuses == {"ok": 1, "refused": 9}
    assert scalar(app.data_dir, "SELECT MIN(balance_after) FROM ledger_entries") >= 0
    assert verify(app.data_dir) == []


def test_twenty_users_chatting_and_topping_up_in_parallel_keep_exact_books(app, admin):
    rng = random.Random(20261125)
    users = [f"user{n:02d}" for n in range(20)]
    sessions = {}
    for name in users:
        first = signed_up(app, name)
        second = session(app)
        assert second.login(name) == ""
        sessions[name] = [first, second]

    operations = []
    for name in users:
        for n in range(10):
            client = sessions[name][n % 2]
            kind = rng.choice(["mini", "mini", "pro", "pro", "topup"])
            amount = rng.randint(1, 6)
            operations.append((name, kind, amount, client))
    rng.shuffle(operations)

    def run(operation):
        name, kind, amount, client = operation
        if kind == "topup":
            return name, kind, client.top_up(amount), amount
        return name, kind, client.chat(kind, f"Say one word about the number {amount}."), amount

    began = time.monotonic()
    results = at_once([lambda op=op: run(op) for op in operations], workers=40)
    elapsed = time.monotonic() - began

    topped_up, charged, outcomes = defaultdict(int), defaultdict(int), Counter()
    for name, kind, result, amount in results:
        if kind == "topup":
            assert result.startswith(f"Added {amount} credit"), result
            topped_up[name] += amount
            outcomes["topup"] += 1
        else:
            price = 1 if kind == "mini" else 3
            # An answer says what it cost; a refusal is said beside the box and costs nothing.
            assert result.outcome.ok and result.charged in (None, 0, price), result.text
            if not result.charged:
                assert "Not enough credits" in result.text or "empty answer" in result.text, result.text
            charged[name] += result.charged or 0
            outcomes[f"{kind} {'charged' if result.charged else 'not charged'}"] += 1
    assert outcomes["mini charged"] + outcomes["pro charged"] > 50, outcomes

    for name in users:
        assert balance(app.data_dir, name) == (STARTING + topped_up[name] - charged[name], 0), name
    assert scalar(app.data_dir, "SELECT COUNT(*) FROM holds WHERE status = 'active'") == 0
    log_total = scalar(app.data_dir, "SELECT SUM(credits_charged) FROM interactions")
    ledger_total = -scalar(app.data_dir, "SELECT SUM(amount) FROM ledger_entries WHERE kind = 'charge'")
    report = admin.call("admin_report", "", "")
    assert report.ok, report.error
    by_user = report.data[2]
    column = by_user["headers"].index("Credits spent")
    report_total = sum(row[column] for row in by_user["data"])
    assert log_total == ledger_total == report_total >= sum(charged.values())
    per_user = {row[0]: row[column] for row in by_user["data"]}
    for name in users:
        assert per_user[name] == charged[name], name
    assert verify(app.data_dir) == []
    print(f"200 operations from 40 sessions in {elapsed:.1f} s: {dict(outcomes)}")


@pytest.fixture(scope="module")
def small_queue_app(tmp_path_factory):
    """queue_size 1: one generation running and one waiting per model; slow answers keep it busy.

    Gradio's own queue then holds 4 × (1 + 1) × 2 tiers = 16 events.
    """
    running = start_app(tmp_path_factory.mktemp("queue"), GEMMA_CHAT_QUEUE_SIZE="1", **FAULTS_HOOK)
    yield running
    running.stop()


def test_past_the_queue_size_requests_are_refused_busy_at_once_never_hang(small_queue_app):
    """40 requests at once for one model: two are answered, the rest are told busy — none waits.

    Past the model's queue, the page says the model is busy, try again. Each account here has 10
    pages: past its `events_per_user` (8) events waiting or running, the edge refuses the join with
    429 at once (issue 21; Gradio's own queue is sized to hold every account at its cap).
    """
    app = small_queue_app
    clients = []
    for n in range(4):
        clients.append(signed_up(app, f"queuer{n}"))
        for _ in range(9):
            other = session(app)
            assert other.login(f"queuer{n}") == ""
            clients.append(other)

    timings = []

    def ask(client):
        began = time.monotonic()
        reply = client.chat("mini", "[fault:slow] What is the capital of France?")
        timings.append((time.monotonic() - began, reply))
        return reply

    began = time.monotonic()
    replies = at_once([lambda c=c: ask(c) for c in clients])
    elapsed = time.monotonic() - began

    answered = [r for r in replies if r.charged == 1]
    model_busy = [r for r in replies if r.outcome.ok and not r.charged]
    over_cap = [r for r in replies if r.outcome.status_code == 429]
    assert len(answered) + len(model_busy) + len(over_cap) == len(replies), [(r.outcome.status_code, r.text) for r in replies]
    assert answered and model_busy and len(answered) < len(replies) // 4, [r.text for r in replies]
    for reply in model_busy:
        assert "is busy; please try again" in reply.text, reply.text
    for reply in over_cap:
        assert "waiting or running" in reply.text, reply.text
    # Every refusal comes back at once; only the answered ones wait for the slow model.
    slow_refusals = [(seconds, reply.text[:80]) for seconds, reply in timings if reply.charged != 1 and seconds >= SLOW_MIN_S]
    assert slow_refusals == []
    assert elapsed < 30, elapsed
    total = sum(balance(app.data_dir, f"queuer{n}")[0] for n in range(4))
    assert total == 4 * 10 - len(answered)
    statuses = Counter(s for (s,) in query(app.data_dir, "SELECT status FROM interactions"))
    assert statuses == {"ok": len(answered), "refused": len(model_busy)}
    assert verify(app.data_dir) == []
