"""The admin reports' roll-up: each UTC day's turns counted per (model, status, source) and its
active users, and every user's credits and turns, summed once when the day has settled.

A day settles an hour after it ends, once none of its turns is pending. Rows are written with
the time they are written at, inside a transaction of milliseconds, so an hour later nothing more
arrives with that date; and its rows never change again: only pending turns are finished
(chats/interactions.py), ledger entries are append-only. Whatever edits a finished turn, or
writes a date in the past, must call clear_rollup(); the next report sums the days again.
Reports read settled days here and the days after them from the log itself (report_queries.py).
"""

from __future__ import annotations

import datetime as dt

from ..errors import DatabaseRetryableError
from .db import database, execute_many, read_snapshot, transaction, utcnow

DAY = "substr(created_at, 1, 10)"  # the UTC day of a stored timestamp ('YYYY-MM-DD HH:MM:SS[.ffffff]')
ONE_DAY = dt.timedelta(days=1)
SETTLE_AFTER = dt.timedelta(hours=1)  # after a day ends, before it is summed

DAY_COUNT_COLUMNS = (
    "day, model_name, status, source, requests, credits, ttft_count, duration_count, timed_tokens, timed_ms"
)
TABLES = ("report_rollup", "report_day_counts", "report_day_users", "report_user_totals")


def range_where(column: str, start: dt.date | None, end: dt.date | None) -> tuple[str, list]:
    """`column` (a stored timestamp, or DAY) from the day `start` up to, not including, the day
    `end`. On DAY, the range and GROUP BY DAY both use the index on that expression, where the
    same range on created_at, open-ended, lets the planner scan that index whole for its order."""
    clauses, params = [], []
    if start:
        clauses.append(f"{column} >= ?")
        params.append(start.isoformat())
    if end:
        clauses.append(f"{column} < ?")
        params.append(end.isoformat())
    return " AND ".join(clauses) or "1 = 1", params


def day_counts_sql(where: str) -> str:
    """The turns matching `where`, counted per (day, model, status, source): a row of
    report_day_counts. Timed turns are the ones tokens/s counts (a duration and tokens, both non-zero)."""
    return f"""SELECT {DAY} AS day, model_name, status, source, COUNT(*) AS requests,
                      SUM(credits_charged) AS credits, COUNT(ttft_ms) AS ttft_count,
                      COUNT(duration_ms) AS duration_count,
                      SUM(CASE WHEN duration_ms <> 0 AND completion_tokens <> 0 THEN completion_tokens ELSE 0 END)
                          AS timed_tokens,
                      SUM(CASE WHEN duration_ms <> 0 AND completion_tokens <> 0 THEN duration_ms ELSE 0 END) AS timed_ms
               FROM interactions WHERE {where} GROUP BY {DAY}, model_name, status, source"""


def active_users_sql(where: str) -> str:
    """Users with a turn matching `where`, per day: a row of report_day_users."""
    return f"SELECT {DAY} AS day, COUNT(DISTINCT user_id) AS active_users FROM interactions WHERE {where} GROUP BY {DAY}"


def user_totals_ctes(where: str, *, recent: bool = False, rolled_up: bool = False) -> str:
    """CTEs ending in `user_totals`: per user with any, the credits spent, topped up and granted
    and the turns matching `where` (on created_at; its parameters twice), plus with `rolled_up`
    the roll-up's totals. Ledger entries are summed per (user, kind) first: one pass over an index.

    `recent`: `where` holds only the last few days. They are read by time, not picked out of a
    whole per-user index (what the planner does with an open-ended range); MATERIALIZED says so.
    """
    ledger, turns, head = "ledger_entries", "interactions", ""
    if recent:
        head = f"""recent_entries AS MATERIALIZED (SELECT user_id, kind, amount FROM ledger_entries WHERE {where}),
            recent_turns AS MATERIALIZED (SELECT user_id FROM interactions WHERE {where}),
            """
        ledger, turns, where = "recent_entries", "recent_turns", "1 = 1"
    rolled = (
        """
                UNION ALL
                SELECT user_id, credits_spent, credits_topped_up, credits_granted, requests FROM report_user_totals"""
        if rolled_up else ""
    )
    return f"""{head}per_kind AS (
                SELECT user_id, kind, SUM(amount) AS amount FROM {ledger} WHERE {where} GROUP BY user_id, kind),
            user_parts AS (
                SELECT user_id, -SUM(CASE WHEN kind = 'charge' THEN amount ELSE 0 END) AS credits_spent,
                       SUM(CASE WHEN kind = 'topup' THEN amount ELSE 0 END) AS credits_topped_up,
                       SUM(CASE WHEN kind = 'grant' THEN amount ELSE 0 END) AS credits_granted, 0 AS requests
                FROM per_kind GROUP BY user_id
                UNION ALL
                SELECT user_id, 0, 0, 0, COUNT(*) FROM {turns} WHERE {where} GROUP BY user_id{rolled}),
            user_totals AS (
                SELECT user_id, SUM(credits_spent) AS credits_spent, SUM(credits_topped_up) AS credits_topped_up,
                       SUM(credits_granted) AS credits_granted, SUM(requests) AS requests
                FROM user_parts GROUP BY user_id)"""


def rolled_up_through() -> dt.date | None:
    """The last day in the roll-up (every day up to it is), or None before the first."""
    row = database.execute_sql("SELECT through FROM report_rollup WHERE id = 1").fetchone()
    return dt.date.fromisoformat(row[0]) if row else None


def last_settled_day(now: dt.datetime) -> dt.date:
    return (now - SETTLE_AFTER).date() - ONE_DAY


def bring_up_to_date() -> dt.date | None:
    """Sum the days settled since the last call into the roll-up; returns its last day.

    The sums are read outside the write lock (settled days cannot change) and written in one short
    transaction, only if no other process moved the roll-up on meanwhile. A busy database leaves
    the roll-up as it was: reports then read more days from the log, with the same result.
    """
    through = rolled_up_through()
    settled = last_settled_day(utcnow())
    if through is not None and through >= settled:
        return through
    start = through + ONE_DAY if through else None
    with read_snapshot():
        where, params = range_where(DAY, start, settled + ONE_DAY)
        counts = database.execute_sql(day_counts_sql(where), params).fetchall()
        pending = [day for day, _, status, *_ in counts if status == "pending"]
        last = dt.date.fromisoformat(min(pending)) - ONE_DAY if pending else settled
        if through is not None and last <= through:
            return through  # the next day still has a turn in progress
        counts = [row for row in counts if row[0] <= last.isoformat()]
        where, params = range_where(DAY, start, last + ONE_DAY)
        active = database.execute_sql(active_users_sql(where), params).fetchall()
        where, params = range_where("created_at", start, last + ONE_DAY)
        users = database.execute_sql(
            f"WITH {user_totals_ctes(where, recent=through is not None)} SELECT * FROM user_totals", params + params
        ).fetchall()
    try:
        with transaction():
            if rolled_up_through() != through:
                return rolled_up_through()
            execute_many(
                f"INSERT INTO report_day_counts ({DAY_COUNT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", counts
            )
            execute_many("INSERT INTO report_day_users (day, active_users) VALUES (?, ?)", active)
            execute_many(
                """INSERT INTO report_user_totals (user_id, credits_spent, credits_topped_up, credits_granted, requests)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (user_id) DO UPDATE SET
                       credits_spent = report_user_totals.credits_spent + excluded.credits_spent,
                       credits_topped_up = report_user_totals.credits_topped_up + excluded.credits_topped_up,
                       credits_granted = report_user_totals.credits_granted + excluded.credits_granted,
                       requests = report_user_totals.requests + excluded.requests""",
                users,
            )
            database.execute_sql(
                "INSERT INTO report_rollup (id, through) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET through = excluded.through",
                (last.isoformat(),),
            )
    except DatabaseRetryableError:  # locked, full, or the server away: the report reads up to the last roll-up
        return through
    return last


def clear_rollup() -> None:
    """Forget every sum: after a finished turn or an old entry was edited by hand."""
    with transaction():
        for table in TABLES:
            database.execute_sql(f"DELETE FROM {table}")
