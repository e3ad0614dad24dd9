"""The admin reports agree, to the last count and percentile, with the same report computed the
slow way: every row of the log read into Python (what ops/reports.py itself did before it ran in SQL)."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter, defaultdict

import pytest

from gemma_chat.store import rollup
from gemma_chat.store import db
from gemma_chat.ops.reports import Reports

pytestmark = pytest.mark.both_engines

STATUSES = ("ok", "ok", "ok", "stopped", "error", "interrupted", "refused")
MODELS = ("Gemma 3 1B", "Gemma 3 12B", "Tiny")


def percentile(values: list[int], percent: int) -> int | None:
    """Nearest rank, as the report promises: the smallest value with at least percent% at or below it."""
    if not values:
        return None
    values = sorted(values)
    return values[max(0, -(-len(values) * percent // 100) - 1)]


def expected_report(since: str | None = None, until: str | None = None) -> dict:
    """The report from every row of the log, in Python."""
    def in_range(created_at: str) -> bool:
        return (since is None or created_at[:10] >= since) and (until is None or created_at[:10] <= until)

    turns = [
        row for row in db.database.execute_sql(
            "SELECT user_id, model_name, status, source, credits_charged, ttft_ms, duration_ms, completion_tokens, "
            "created_at FROM interactions"
        )
        if in_range(row[8])
    ]
    by_model = defaultdict(Counter)
    by_source = defaultdict(Counter)
    per_day, active = Counter(), defaultdict(set)
    ran = defaultdict(list)
    for user, model, status, source, credits, ttft, duration, tokens, created_at in turns:
        by_model[model].update(requests=1, credits=credits, **{
            "ok": status == "ok", "stopped": status == "stopped", "refused": status == "refused",
            "failed": status in ("error", "interrupted"),
        })
        by_source[(source, model)].update(requests=1, credits=credits)
        per_day[(created_at[:10], model)] += 1
        active[created_at[:10]].add(user)
        if status not in ("refused", "pending"):
            ran[model].append((status, ttft, duration, tokens))
    performance = []
    for model, rows in ran.items():
        timed = [(duration, tokens) for _, _, duration, tokens in rows if duration and tokens]
        seconds = sum(duration for duration, _ in timed) / 1000
        ttft = [ttft for _, ttft, _, _ in rows if ttft is not None]
        durations = [duration for _, _, duration, _ in rows if duration is not None]
        performance.append({
            "model": model,
            "requests": len(rows),
            "error_rate": round(sum(status in ("error", "interrupted") for status, *_ in rows) / len(rows), 4),
            "ttft_median_ms": percentile(ttft, 50),
            "ttft_p95_ms": percentile(ttft, 95),
            "tokens_per_s": round(sum(tokens for _, tokens in timed) / seconds, 1) if seconds else None,
            "answer_median_ms": percentile(durations, 50),
            "answer_p95_ms": percentile(durations, 95),
        })
    entries = defaultdict(Counter)
    for user, kind, amount, created_at in db.database.execute_sql(
        "SELECT user_id, kind, amount, created_at FROM ledger_entries"
    ):
        if in_range(created_at):
            entries[user][kind] += amount
    requests_per_user = Counter(user for user, *_ in turns)
    by_user = [
        {"username": name, "credits_spent": -entries[user]["charge"], "credits_topped_up": entries[user]["topup"],
         "credits_granted": entries[user]["grant"], "balance": balance, "requests": requests_per_user[user]}
        for user, name, balance in db.database.execute_sql("SELECT id, username, balance FROM users")
    ]
    keys = ("requests", "ok", "stopped", "failed", "refused", "credits")
    by_source_rows = sorted(
        ({"source": source, "model": model, "requests": c["requests"], "credits": c["credits"]}
         for (source, model), c in by_source.items()),
        key=lambda r: r["model"],
    )
    by_source_rows.sort(key=lambda r: r["source"], reverse=True)  # stable: by model within a source
    return {
        "requests_by_model": sorted(
            ({"model": model, **{key: counts[key] for key in keys}} for model, counts in by_model.items()),
            key=lambda r: (-r["requests"], r["model"]),
        ),
        "credits_by_user": sorted(by_user, key=lambda r: (-r["credits_spent"], r["username"].lower())),
        "requests_by_source": by_source_rows,
        "requests_per_day": [{"day": day, "model": model, "requests": n} for (day, model), n in sorted(per_day.items())],
        "model_performance": sorted(performance, key=lambda r: (-r["requests"], r["model"])),
        "active_users_by_day": [{"day": day, "active_users": len(users)} for day, users in sorted(active.items())],
    }


class Log:
    """Writes turns and ledger entries straight into the tables, on any day, as the app would have."""

    def __init__(self, rng: random.Random, users: int = 6):
        self.rng = rng
        self.count = 0
        self.users = []
        for n in range(users):
            cursor = db.database.execute_sql(
                "INSERT INTO users (username, password_hash, balance, created_at) VALUES (?, 'x', ?, '2025-01-01') RETURNING id",
                (f"{'AbCdEf'[n]}user{n}", rng.randint(0, 50)),
            )
            self.users.append(cursor.fetchone()[0])

    def turn(self, created_at: str, *, status: str | None = None, model: str | None = None, ttft=..., duration=...,
             tokens=..., user: int | None = None) -> str:
        rng = self.rng
        self.count += 1
        request_id = f"r{self.count:06d}"
        status = status or rng.choice(STATUSES)
        # Few distinct values, so ties are common; None, 0 and the odd outlier as well.
        pick = lambda: rng.choice([None, 0, 5, 7, 7, 40, 40, 40, 120, 900, rng.randint(1, 5000)])  # noqa: E731
        ttft = pick() if ttft is ... else ttft
        duration = pick() if duration is ... else duration
        tokens = rng.choice([None, 0, 1, 12, 300]) if tokens is ... else tokens
        credits = rng.choice([1, 3]) if status in ("ok", "stopped") else 0
        user = user or rng.choice(self.users)
        db.database.execute_sql(
            "INSERT INTO interactions (request_id, user_id, tier, model_name, prompt, status, credits_charged, "
            "completion_tokens, ttft_ms, duration_ms, created_at, source) VALUES (?, ?, 'mini', ?, 'q', ?, ?, ?, ?, ?, ?, ?)",
            (request_id, user, model or rng.choice(MODELS), status, credits, tokens, ttft, duration, created_at,
             rng.choice(["ui", "ui", "api"])),
        )
        if credits:
            self.entry(user, -credits, "charge", created_at, request_id)
        return request_id

    def entry(self, user: int, amount: int, kind: str, created_at: str, request_id: str | None = None) -> None:
        db.database.execute_sql(
            "INSERT INTO ledger_entries (user_id, amount, kind, balance_after, request_id, created_at) "
            "VALUES (?, ?, ?, 0, ?, ?)",
            (user, amount, kind, request_id, created_at),
        )

    def days(self, first: dt.date, count: int, turns_per_day: int, *, pending: float = 0.0) -> None:
        """Turns and top-ups at random times over `count` days from `first` (some days left empty);
        a `pending` share of the turns never finished (a process that died mid-answer)."""
        for offset in range(count):
            day = first + dt.timedelta(days=offset)
            if self.rng.random() < 0.15:
                continue
            for _ in range(self.rng.randint(1, turns_per_day)):
                self.turn(self.at(day), status="pending" if self.rng.random() < pending else None)
            for _ in range(self.rng.randint(0, 2)):  # a grant may take credits away, a top-up only adds
                amount = self.rng.randint(-5, 40) or 1
                kind = "grant" if amount < 0 else self.rng.choice(["topup", "grant"])
                self.entry(self.rng.choice(self.users), amount, kind, self.at(day))

    def at(self, day: dt.date) -> str:
        moment = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=self.rng.randint(0, 86399),
                                                                     microseconds=self.rng.choice([0, 123456]))
        return str(moment)


def report_without_errors(report: Reports) -> dict:
    full = report.full()
    return {key: value for key, value in full.items() if key not in ("since", "until", "errors")}


def test_percentiles_are_nearest_rank(database):
    log = Log(random.Random(1), users=1)
    today = db.utcnow().date()
    for value in range(1, 21):  # 1..20, on a settled day: the median is the 10th value, p95 the 19th
        log.turn(f"{today - dt.timedelta(days=5)} 12:00:00", status="ok", model="m", ttft=value, duration=21 - value,
                 tokens=10)
    (row,) = Reports().model_performance()
    assert (row["ttft_median_ms"], row["ttft_p95_ms"], row["answer_median_ms"], row["answer_p95_ms"]) == (10, 19, 10, 19)
    log.turn(f"{today} 00:00:01", status="error", model="m", ttft=21, duration=None, tokens=None)
    (row,) = Reports().model_performance()  # 21 values: p95's rank is ceil(19.95) = 20
    assert (row["requests"], row["ttft_median_ms"], row["ttft_p95_ms"]) == (21, 11, 20)
    assert (row["answer_median_ms"], row["answer_p95_ms"], row["error_rate"]) == (10, 19, round(1 / 21, 4))
    (one_day,) = Reports.for_range(today, today).model_performance()
    assert (one_day["ttft_median_ms"], one_day["ttft_p95_ms"], one_day["answer_median_ms"]) == (21, 21, None)
    assert one_day["tokens_per_s"] is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_report_matches_the_log_read_row_by_row(database, seed):
    log = Log(random.Random(seed))
    log.days(dt.date(2026, 2, 20), 20, turns_per_day=40, pending=0.02)
    for since, until in [(None, None), ("2026-02-25", "2026-03-03"), ("2026-03-01", "2026-03-01"),
                         ("2026-02-27", None), (None, "2026-02-28"), ("2026-01-01", "2026-12-31"),
                         ("2027-01-01", None)]:
        got = report_without_errors(Reports.for_range(since, until))
        assert got == expected_report(since, until), (since, until)


RANGES = [(None, None), ("2026-03-01", "2026-03-07"), ("2026-03-09", "2026-03-13"), ("2026-03-12", None),
          (None, "2026-03-08"), ("2026-03-14", "2026-03-14")]


@pytest.fixture
def clock(monkeypatch):
    """What the roll-up takes for now (UTC), moved by the test."""
    class Clock:
        now = dt.datetime(2026, 3, 10, 9, 30)

    monkeypatch.setattr(rollup, "utcnow", lambda: Clock.now)
    return Clock


def finish(log: Log, request_id: str, when: str) -> None:
    """What finish_interaction and the capture do to a pending turn, at `when`."""
    db.database.execute_sql(
        "UPDATE interactions SET status = 'ok', credits_charged = 3, completion_tokens = 50, ttft_ms = 77, "
        "duration_ms = 1500, finished_at = ? WHERE request_id = ? AND status = 'pending'",
        (when, request_id),
    )
    user = db.database.execute_sql("SELECT user_id FROM interactions WHERE request_id = ?", (request_id,)).fetchone()[0]
    log.entry(user, -3, "charge", when, request_id)


def test_reports_stay_exact_while_days_settle_and_late_turns_finish(database, clock):
    log = Log(random.Random(7))
    log.days(dt.date(2026, 2, 25), 14, turns_per_day=30)  # up to 2026-03-10, today
    late = [log.turn(log.at(dt.date(2026, 3, day)), status="pending") for day in (8, 9, 10)]
    for day in range(10, 17):
        for hour in (0, 13):  # just after midnight yesterday is not settled yet; in the afternoon it is
            today = dt.date(2026, 3, day)
            clock.now = dt.datetime.combine(today, dt.time(hour, 0, 5))
            for _ in range(log.rng.randint(0, 20)):
                log.turn(str(clock.now + dt.timedelta(seconds=log.rng.randint(0, 3600))))
            if (day, hour) == (12, 0):
                finish(log, late[0], str(clock.now))  # a day after its own day ended
            if (day, hour) == (14, 13):
                finish(log, late[1], str(clock.now))
                finish(log, late[2], str(clock.now))
            for since, until in RANGES:
                assert report_without_errors(Reports.for_range(since, until)) == expected_report(since, until), (
                    clock.now, since, until)
            pending = db.database.execute_sql("SELECT MIN(created_at) FROM interactions WHERE status = 'pending'").fetchone()[0]
            held_back = dt.date.fromisoformat(pending[:10]) - dt.timedelta(days=1) if pending else today
            settled = today - dt.timedelta(days=2 if hour == 0 else 1)
            assert rollup.rolled_up_through() == min(settled, held_back), clock.now


def test_the_rollup_is_summed_once_and_rebuilt_the_same(database, clock):
    log = Log(random.Random(11))
    log.days(dt.date(2026, 2, 20), 19, turns_per_day=25)
    first = report_without_errors(Reports())
    tables = {table: sorted(db.database.execute_sql(f"SELECT * FROM {table}").fetchall()) for table in rollup.TABLES}
    assert rollup.rolled_up_through() == dt.date(2026, 3, 9) and all(tables.values())
    assert rollup.bring_up_to_date() == dt.date(2026, 3, 9)
    rollup.clear_rollup()
    assert rollup.rolled_up_through() is None
    assert report_without_errors(Reports()) == first == expected_report()
    assert {table: sorted(db.database.execute_sql(f"SELECT * FROM {table}").fetchall()) for table in rollup.TABLES} == tables


def test_a_busy_database_leaves_the_rollup_behind_and_the_report_exact(database, clock, settings):
    log = Log(random.Random(5))
    log.days(dt.date(2026, 2, 28), 10, turns_per_day=20)
    if db.dialect().name == "sqlite":
        import sqlite3

        other = sqlite3.connect(settings.db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        db.database.execute_sql("PRAGMA busy_timeout = 50")
    else:
        import psycopg

        other = psycopg.connect(settings.database_url)  # another instance writing the roll-up's tables
        other.execute("LOCK TABLE " + ", ".join(rollup.TABLES) + " IN EXCLUSIVE MODE")  # reads still pass
        db.database.execute_sql("SET lock_timeout = 50")
    try:
        assert report_without_errors(Reports()) == expected_report()
        assert rollup.rolled_up_through() is None
    finally:
        other.close()  # its transaction ends with it, uncommitted
    assert report_without_errors(Reports()) == expected_report()
    assert rollup.rolled_up_through() == dt.date(2026, 3, 9)


def test_a_database_of_the_previous_schema_gets_the_rollup(tmp_path, clock):
    path = tmp_path / "old.db"
    db.open_database(path, migrate=False)
    db.apply_migrations([m for m in db.MIGRATIONS if m[0] <= "0006_admin_actions"])
    log = Log(random.Random(3))
    log.days(dt.date(2026, 2, 25), 14, turns_per_day=20)
    db.close_database()
    db.open_database(path)  # what the next start-up does
    try:
        assert "0007_report_performance" in db.applied_migrations()
        assert report_without_errors(Reports()) == expected_report()
        assert rollup.rolled_up_through() == dt.date(2026, 3, 9)
    finally:
        db.close_database()


def test_two_reports_rolling_up_at_once_add_each_day_once(database, clock, monkeypatch):
    import threading

    log = Log(random.Random(9))
    log.days(dt.date(2026, 2, 25), 14, turns_per_day=20)
    expected = expected_report()
    active_users_sql = rollup.active_users_sql

    def rival_first(where):  # while this report reads its sums, another one writes the same days
        def rival():
            try:
                rollup.bring_up_to_date()
            finally:
                db.database.close()

        monkeypatch.setattr(rollup, "active_users_sql", active_users_sql)
        thread = threading.Thread(target=rival)
        thread.start()
        thread.join()
        return active_users_sql(where)

    monkeypatch.setattr(rollup, "active_users_sql", rival_first)
    assert rollup.bring_up_to_date() == dt.date(2026, 3, 9)
    assert report_without_errors(Reports()) == expected
