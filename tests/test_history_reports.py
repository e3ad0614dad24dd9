"""History pages (own rows only, newest first) and the admin reports' numbers."""

from __future__ import annotations

import pytest

from gemma_chat.accounts import auth
from gemma_chat.billing import ledger
from gemma_chat.chats import interactions
from gemma_chat.store import db
from gemma_chat.ops.error_log import log_error
from gemma_chat.errors import ValidationError
from gemma_chat.chats.history import list_history
from gemma_chat.chats.interactions import TurnOutcome
from gemma_chat.ops.reports import Reports

pytestmark = pytest.mark.both_engines


def chat_turn(user_id: int, tier: str, price: int, prompt: str, *, ok: bool = True) -> str:
    """The ledger side of a chat turn, as chats/turn.py does it."""
    request_id = ledger.new_request_id()
    with db.transaction():
        ledger.hold_credits(user_id, price, request_id)
        interactions.start_interaction(request_id, user_id, tier, f"model-{tier}", prompt)
    with db.transaction():
        if ok:
            ledger.capture_hold(request_id)
            interactions.finish_interaction(request_id, TurnOutcome("ok", f"answer to {prompt}", price))
        else:
            ledger.release_hold(request_id, "failed")
            interactions.finish_interaction(request_id, TurnOutcome("error", error_id="E-1"))
    return request_id


@pytest.fixture
def two_users(settings, database):
    alice = auth.register_user(settings, "alice", "long enough pw")
    bob = auth.register_user(settings, "bob", "long enough pw")
    return alice, bob


def test_history_is_paginated_newest_first_and_private(two_users):
    alice, bob = two_users
    ledger.grant_credits(alice.id, 100, actor_id=None)
    for n in range(45):
        chat_turn(alice.id, "mini", 1, f"alice {n}")
    chat_turn(bob.id, "pro", 3, "bob secret")

    first = list_history(alice.id, 1, page_size=20)
    assert (first.page, first.total_pages, first.total) == (1, 3, 45)
    assert [r.prompt for r in first.rows[:2]] == ["alice 44", "alice 43"]
    last = list_history(alice.id, 3, page_size=20)
    assert [r.prompt for r in last.rows] == [f"alice {n}" for n in range(4, -1, -1)]
    beyond = list_history(alice.id, 99, page_size=20)
    assert beyond.page == 3
    everything = [r.prompt for p in (1, 2, 3) for r in list_history(alice.id, p, page_size=20).rows]
    assert "bob secret" not in everything and len(set(everything)) == 45
    assert [r.prompt for r in list_history(bob.id).rows] == ["bob secret"]


def test_history_of_a_new_user_is_one_empty_page(two_users):
    page = list_history(two_users[1].id)
    assert (page.rows, page.page, page.total_pages) == ([], 1, 1)


@pytest.mark.parametrize("page", [0, -1, "x", "", None, 1.5, True])
def test_bad_page_numbers_are_refused(two_users, page):
    with pytest.raises(ValidationError):
        list_history(two_users[0].id, page)


def test_reports_count_requests_and_credits(two_users):
    alice, bob = two_users
    chat_turn(alice.id, "mini", 1, "a1")
    chat_turn(alice.id, "pro", 3, "a2")
    chat_turn(alice.id, "pro", 3, "a3", ok=False)
    chat_turn(bob.id, "mini", 1, "b1")
    ledger.top_up(bob.id, 5, maximum=1000)
    interactions.log_refused(ledger.new_request_id(), bob.id, "pro", "model-pro", "too poor")
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        error_id = log_error("chat", exc, user_id=alice.id)

    report = Reports().full()
    by_model = {r["model"]: r for r in report["requests_by_model"]}
    assert by_model["model-pro"] == {"model": "model-pro", "requests": 3, "ok": 1, "stopped": 0, "failed": 1, "refused": 1, "credits": 3}
    assert by_model["model-mini"]["requests"] == 2 and by_model["model-mini"]["credits"] == 2
    by_user = {r["username"]: r for r in report["credits_by_user"]}
    assert by_user["alice"] == {"username": "alice", "credits_spent": 4, "credits_topped_up": 0, "credits_granted": 0, "balance": 6, "requests": 3}
    assert by_user["bob"]["credits_spent"] == 1 and by_user["bob"]["credits_topped_up"] == 5 and by_user["bob"]["balance"] == 14
    assert report["errors"][0]["error_id"] == error_id and "RuntimeError: boom" in report["errors"][0]["traceback"]
    today = db.utcnow().date().isoformat()
    per_day = {(r["day"], r["model"]): r["requests"] for r in report["requests_per_day"]}
    assert per_day == {(today, "model-mini"): 2, (today, "model-pro"): 3}


def test_reports_filter_by_date(two_users):
    alice, _ = two_users
    request_id = chat_turn(alice.id, "mini", 1, "old")
    db.database.execute_sql("UPDATE interactions SET created_at = '2025-01-15 10:00:00' WHERE request_id = ?", (request_id,))
    chat_turn(alice.id, "mini", 1, "new")
    in_2025 = Reports.for_range("2025-01-01", "2025-01-31").requests_by_model()
    assert [r["requests"] for r in in_2025] == [1]
    one_day = Reports.for_range("2025-01-15", "2025-01-15").requests_by_model()
    assert [r["requests"] for r in one_day] == [1]
    assert Reports.for_range("2025-01-16", "2025-01-31").requests_by_model() == []
    assert sum(r["requests"] for r in Reports().requests_by_model()) == 2


@pytest.mark.parametrize("since, until", [("2025-13-01", None), ("yesterday", None), ("2025-02-01", "2025-01-01")])
def test_bad_report_dates_are_refused(since, until):
    with pytest.raises(ValidationError):
        Reports.for_range(since, until)


def test_model_performance_and_active_users_per_day(two_users):
    alice, bob = two_users
    for user in (alice, bob):
        ledger.grant_credits(user.id, 100, actor_id=None)
    ids = [chat_turn(alice.id, "mini", 1, "a"), chat_turn(bob.id, "mini", 1, "b"), chat_turn(alice.id, "mini", 1, "c", ok=False)]
    timings = [(100, 1000, 20), (300, 2000, 20), (None, 500, None)]
    for request_id, (ttft, duration, tokens) in zip(ids, timings):
        db.database.execute_sql(
            "UPDATE interactions SET ttft_ms = ?, duration_ms = ?, completion_tokens = ? WHERE request_id = ?",
            (ttft, duration, tokens, request_id),
        )
    (row,) = Reports().model_performance()
    assert row == {
        "model": "model-mini", "requests": 3, "error_rate": round(1 / 3, 4), "ttft_median_ms": 100, "ttft_p95_ms": 300,
        "tokens_per_s": round(40 / 3, 1), "answer_median_ms": 1000, "answer_p95_ms": 2000,
    }
    (day,) = Reports().active_users_by_day()
    assert day["active_users"] == 2
    assert set(Reports().full()) >= {"model_performance", "active_users_by_day"}
