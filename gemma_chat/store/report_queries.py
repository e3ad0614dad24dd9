"""The admin report's queries over the days [since, until] (UTC, None for unbounded), each
returning plain rows. Days up to `through`, the roll-up's last (rollup.py), are read from its sums,
the days after them from the interaction log and the ledger: the two never overlap.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable, Iterator

from . import rollup
from .db import database
from .rollup import ONE_DAY

Day = dt.date | None
TIMINGS = ("ttft_ms", "duration_ms")  # each has a per-model index that rank lookups walk


def _where(column: str, since: Day, until: Day, start: Day = None) -> tuple[str, list]:
    """The range on `column` (a stored timestamp, or rollup.DAY), from `start` on if that is later."""
    since = max(since, start) if since and start else (since or start)
    return rollup.range_where(column, since, until + ONE_DAY if until else None)


def _split(since: Day, until: Day, through: Day):
    """The range as (settled days read from the roll-up, the days after them read from the log):
    each a (where, params), on `day` and on rollup.DAY, or None when the range has none."""
    rolled = live = None
    if through is not None and not (since and since > through):
        last = min(until, through) if until else through
        rolled = ("day <= ?" + (" AND day >= ?" if since else ""),
                  [last.isoformat()] + ([since.isoformat()] if since else []))
    if not (until and through and until <= through):
        live = _where(rollup.DAY, since, until, through + ONE_DAY if through else None)
    return rolled, live


def _rolled_and_live(since: Day, until: Day, through: Day, rolled_sql: str,
                     live_sql: Callable[[str], str]) -> tuple[str, list]:
    """The range's rows: `rolled_sql` (a SELECT on a roll-up table, whose WHERE is added) for
    the settled days, UNION ALL `live_sql(where)` over the log for the days after them."""
    rolled, live = _split(since, until, through)
    parts, params = [], []
    if rolled:
        parts.append(f"{rolled_sql} WHERE {rolled[0]}")
        params += rolled[1]
    if live:
        parts.append(live_sql(live[0]))
        params += live[1]
    return " UNION ALL ".join(parts), params


def _turns(since: Day, until: Day, through: Day) -> tuple[str, list]:
    """CTE `turns`: the range's turns counted per (day, model, status, source)."""
    sql, params = _rolled_and_live(
        since, until, through, f"SELECT {rollup.DAY_COUNT_COLUMNS} FROM report_day_counts", rollup.day_counts_sql
    )
    return f"turns AS ({sql})", params


def count_requests_by_model(since: Day, until: Day, through: Day) -> list[tuple]:
    """Per model, most requests first: (model, requests, ok, stopped, failed, refused, credits)."""
    turns, params = _turns(since, until, through)
    cursor = database.execute_sql(
        f"""WITH {turns}, counts AS (
                SELECT model_name, status, SUM(requests) AS n, SUM(credits) AS credits FROM turns
                GROUP BY model_name, status)
            SELECT model_name, SUM(n), SUM(CASE WHEN status = 'ok' THEN n ELSE 0 END),
                   SUM(CASE WHEN status = 'stopped' THEN n ELSE 0 END),
                   SUM(CASE WHEN status IN ('error', 'interrupted') THEN n ELSE 0 END),
                   SUM(CASE WHEN status = 'refused' THEN n ELSE 0 END), SUM(credits)
            FROM counts GROUP BY model_name ORDER BY SUM(n) DESC, model_name""",
        params,
    )
    return list(cursor)


def sum_credits_by_user(since: Day, until: Day, through: Day) -> list[tuple]:
    """Every account, biggest spender first: (username, credits spent, topped up, granted,
    balance, requests)."""
    # The roll-up keeps totals from the first day on, so only a range from the beginning uses them.
    rolled_up = since is None and through is not None and (until is None or until >= through)
    where, params = _where("created_at", since, until, through + ONE_DAY if rolled_up else None)
    cursor = database.execute_sql(
        f"""WITH {rollup.user_totals_ctes(where, recent=rolled_up, rolled_up=rolled_up)}
            SELECT u.username, COALESCE(t.credits_spent, 0), COALESCE(t.credits_topped_up, 0),
                   COALESCE(t.credits_granted, 0), u.balance, COALESCE(t.requests, 0)
            FROM users u LEFT JOIN user_totals t ON t.user_id = u.id
            ORDER BY 2 DESC, lower(u.username), u.username""",
        params + params,
    )
    return list(cursor)


def count_requests_by_source(since: Day, until: Day, through: Day) -> list[tuple]:
    """(source, model, requests, credits), "ui" before "api", then by model."""
    turns, params = _turns(since, until, through)
    cursor = database.execute_sql(
        f"""WITH {turns} SELECT source, model_name, SUM(requests), SUM(credits) FROM turns
            GROUP BY source, model_name ORDER BY source DESC, model_name""",
        params,
    )
    return list(cursor)


def count_requests_per_day(since: Day, until: Day, through: Day) -> list[tuple]:
    """(day, model, requests), by day, then by model."""
    turns, params = _turns(since, until, through)
    cursor = database.execute_sql(
        f"""WITH {turns} SELECT day, model_name, SUM(requests) FROM turns
            GROUP BY day, model_name ORDER BY day, model_name""",
        params,
    )
    return list(cursor)


def count_performance_by_model(since: Day, until: Day, through: Day) -> dict[str, tuple]:
    """Per model, of the turns that ran: (turns, failed, with a TTFT, with a duration, timed
    tokens, timed ms)."""
    turns, params = _turns(since, until, through)
    cursor = database.execute_sql(
        f"""WITH {turns}
            SELECT model_name, SUM(requests), SUM(CASE WHEN status IN ('error', 'interrupted') THEN requests ELSE 0 END),
                   SUM(ttft_count), SUM(duration_count), SUM(timed_tokens), SUM(timed_ms)
            FROM turns WHERE status NOT IN ('refused', 'pending') GROUP BY model_name""",
        params,
    )
    return {model: tuple(row) for model, *row in cursor}


def select_timing_at_rank(model: str, timing: str, rank: int, count: int) -> int | None:
    """The `rank`-th smallest `timing` (one of TIMINGS) among the `count` turns of `model` that
    ran and have one, every day's: `rank` steps along the model's index (interactions_ttft_by_model,
    interactions_duration_by_model), from whichever end is nearer. None if there are fewer."""
    if timing not in TIMINGS:
        raise ValueError(f"Not a timing column: {timing!r}")
    order, offset = ("ASC", rank - 1) if rank - 1 <= count - rank else ("DESC", count - rank)
    row = database.execute_sql(
        f"""SELECT {timing} FROM interactions
            WHERE model_name = ? AND status NOT IN ('refused', 'pending') AND {timing} IS NOT NULL
            ORDER BY {timing} {order} LIMIT 1 OFFSET ?""",
        (model, offset),
    ).fetchone()
    return row[0] if row else None


def iter_timings(since: Day, until: Day) -> Iterator[tuple]:
    """(model, ttft_ms, duration_ms) of every turn in the range that ran, read through the
    created_at index as it is consumed."""
    where, params = _where("created_at", since, until)
    return iter(
        database.execute_sql(
            f"""SELECT model_name, ttft_ms, duration_ms FROM interactions
                WHERE {where} AND status NOT IN ('refused', 'pending')""",
            params,
        )
    )


def count_active_users_by_day(since: Day, until: Day, through: Day) -> list[tuple]:
    """(day, users with a turn that day), by day."""
    sql, params = _rolled_and_live(
        since, until, through, "SELECT day, active_users FROM report_day_users", rollup.active_users_sql
    )
    return list(database.execute_sql(sql + " ORDER BY 1", params))


def select_recent_errors(since: Day, until: Day, limit: int) -> list[tuple]:
    """The range's newest `limit` errors: (created_at, error_id, location, exception_type,
    message, username, request_id, traceback)."""
    where, params = _where("e.created_at", since, until)
    cursor = database.execute_sql(
        f"""SELECT e.created_at, e.error_id, e.location, e.exception_type, e.message, u.username,
                   e.request_id, e.traceback
            FROM error_events e LEFT JOIN users u ON u.id = e.user_id
            WHERE {where} ORDER BY e.created_at DESC, e.id DESC LIMIT ?""",
        params + [limit],
    )
    return list(cursor)
