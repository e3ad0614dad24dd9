"""Admin reports over a date range: one class, one method per report, each returning plain rows.

Days that can no longer change come from the roll-up (rollup.py), the days after them from the
interaction log and the ledger; the two never overlap, so every figure is exact.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from .store import rollup
from .store.db import database, read_snapshot
from .errors import ValidationError
from .store.rollup import ONE_DAY


def parse_date(value: str | None, what: str) -> dt.date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValidationError(f"{what} must be a date as YYYY-MM-DD; got {str(value)[:40]!r}.") from None


PERCENTS = (50, 95)


def _rank(count: int, percent: int) -> int:
    """The nearest-rank position (1 = smallest) of a percentile among `count` values."""
    return max(1, -(-count * percent // 100))


def _percentile(values: list[int], percent: int) -> int | None:
    """Nearest-rank percentile of sorted values (None for none)."""
    if not values:
        return None
    return values[_rank(len(values), percent) - 1]


def _percentiles_by_rank(counts: dict[str, tuple]) -> dict[tuple[str, str], dict[int, int]]:
    """Every turn's percentiles, model by model: the value at rank k is k steps along the model's
    value index (interactions_ttft_by_model, interactions_duration_by_model), from whichever end
    is nearer. Needs `counts` from the same snapshot: a rank out by one is another value."""
    found = {}
    for model, (_, _, ttft_count, duration_count, _, _) in counts.items():
        for column, count in (("ttft_ms", ttft_count), ("duration_ms", duration_count)):
            values = found.setdefault((model, column), {})
            for percent in PERCENTS:
                if not count:
                    continue
                rank = _rank(count, percent)
                order, offset = ("ASC", rank - 1) if rank - 1 <= count - rank else ("DESC", count - rank)
                row = database.execute_sql(
                    f"""SELECT {column} FROM interactions
                        WHERE model_name = ? AND status NOT IN ('refused', 'pending') AND {column} IS NOT NULL
                        ORDER BY {column} {order} LIMIT 1 OFFSET ?""",
                    (model, offset),
                ).fetchone()
                if row is None:  # only if a settled day was edited by hand (rollup.py)
                    raise RuntimeError("The report's roll-up no longer matches the log: run rollup.clear_rollup().")
                values[percent] = row[0]
    return found


@dataclass(frozen=True)
class Reports:
    """Reports for [since, until], both days included, in UTC. None means unbounded."""

    since: dt.date | None = None
    until: dt.date | None = None

    @classmethod
    def for_range(cls, since=None, until=None) -> "Reports":
        since, until = parse_date(since, "--since"), parse_date(until, "--until")
        if since and until and since > until:
            raise ValidationError(f"The start date {since} is after the end date {until}.")
        return cls(since, until)

    def _where(self, column: str, start: dt.date | None = None) -> tuple[str, list]:
        """The range on `column` (a stored timestamp, or rollup.DAY), from `start` on if that is later."""
        since = max(self.since, start) if self.since and start else (self.since or start)
        return rollup.range_where(column, since, self.until + ONE_DAY if self.until else None)

    def _split(self, through: dt.date | None):
        """The range as (settled days read from the roll-up, the days after them read from the log):
        each a (where, params), on `day` and on rollup.DAY, or None when the range has none."""
        rolled = live = None
        if through is not None and not (self.since and self.since > through):
            last = min(self.until, through) if self.until else through
            rolled = ("day <= ?" + (" AND day >= ?" if self.since else ""),
                      [last.isoformat()] + ([self.since.isoformat()] if self.since else []))
        if not (self.until and through and self.until <= through):
            live = self._where(rollup.DAY, through + ONE_DAY if through else None)
        return rolled, live

    def _rolled_and_live(self, through: dt.date | None, rolled_sql: str, live_sql) -> tuple[str, list]:
        """The range's rows: `rolled_sql` (a SELECT on a roll-up table, whose WHERE is added) for
        the settled days, UNION ALL `live_sql(where)` over the log for the days after them."""
        rolled, live = self._split(through)
        parts, params = [], []
        if rolled:
            parts.append(f"{rolled_sql} WHERE {rolled[0]}")
            params += rolled[1]
        if live:
            parts.append(live_sql(live[0]))
            params += live[1]
        return " UNION ALL ".join(parts), params

    def _turns(self, through: dt.date | None) -> tuple[str, list]:
        """CTE `turns`: the range's turns counted per (day, model, status, source)."""
        sql, params = self._rolled_and_live(
            through, f"SELECT {rollup.DAY_COUNT_COLUMNS} FROM report_day_counts", rollup.day_counts_sql
        )
        return f"turns AS ({sql})", params

    def requests_by_model(self) -> list[dict]:
        turns, params = self._turns(rollup.bring_up_to_date())
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
        keys = ("model", "requests", "ok", "stopped", "failed", "refused", "credits")
        return [dict(zip(keys, row)) for row in cursor]

    def credits_by_user(self) -> list[dict]:
        through = rollup.bring_up_to_date()
        # The roll-up keeps totals from the first day on, so only a range from the beginning uses them.
        rolled_up = self.since is None and through is not None and (self.until is None or self.until >= through)
        where, params = self._where("created_at", through + ONE_DAY if rolled_up else None)
        cursor = database.execute_sql(
            f"""WITH {rollup.user_totals_ctes(where, recent=rolled_up, rolled_up=rolled_up)}
                SELECT u.username, COALESCE(t.credits_spent, 0), COALESCE(t.credits_topped_up, 0),
                       COALESCE(t.credits_granted, 0), u.balance, COALESCE(t.requests, 0)
                FROM users u LEFT JOIN user_totals t ON t.user_id = u.id
                ORDER BY 2 DESC, lower(u.username), u.username""",
            params + params,
        )
        keys = ("username", "credits_spent", "credits_topped_up", "credits_granted", "balance", "requests")
        return [dict(zip(keys, row)) for row in cursor]

    def requests_by_source(self) -> list[dict]:
        """Chat window ("ui") against the /v1 API ("api"), per model."""
        turns, params = self._turns(rollup.bring_up_to_date())
        cursor = database.execute_sql(
            f"""WITH {turns} SELECT source, model_name, SUM(requests), SUM(credits) FROM turns
                GROUP BY source, model_name ORDER BY source DESC, model_name""",
            params,
        )
        return [dict(zip(("source", "model", "requests", "credits"), row)) for row in cursor]

    def requests_per_day(self) -> list[dict]:
        turns, params = self._turns(rollup.bring_up_to_date())
        cursor = database.execute_sql(
            f"""WITH {turns} SELECT day, model_name, SUM(requests) FROM turns
                GROUP BY day, model_name ORDER BY day, model_name""",
            params,
        )
        return [dict(zip(("day", "model", "requests"), row)) for row in cursor]

    def model_performance(self) -> list[dict]:
        """Per model: requests that ran (refused ones did not), error rate, time to first token
        (median, p95), decode speed and answer time (median, p95), from the interaction log."""
        rollup.bring_up_to_date()
        # One snapshot: the percentiles are found by rank, so the counts must be of the same rows.
        with read_snapshot():
            through = rollup.rolled_up_through()
            counts = self._performance_counts(through)
            every_turn = self.since is None and self.until is None
            if counts and not every_turn:  # a range around every turn there is counts the same
                every_turn = counts == Reports()._performance_counts(through)
            percentiles = _percentiles_by_rank(counts) if every_turn else self._percentiles_in_range()
        report = []
        for model, (requests, failed, _, _, tokens, timed_ms) in counts.items():
            seconds = timed_ms / 1000
            ttft, answer = percentiles.get((model, "ttft_ms"), {}), percentiles.get((model, "duration_ms"), {})
            report.append({
                "model": model,
                "requests": requests,
                "error_rate": round(failed / requests, 4),
                "ttft_median_ms": ttft.get(50),
                "ttft_p95_ms": ttft.get(95),
                "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
                "answer_median_ms": answer.get(50),
                "answer_p95_ms": answer.get(95),
            })
        return sorted(report, key=lambda r: (-r["requests"], r["model"]))

    def _performance_counts(self, through: dt.date | None) -> dict[str, tuple]:
        """Per model, of the turns that ran: (turns, failed, with a TTFT, with a duration, timed
        tokens, timed ms)."""
        turns, params = self._turns(through)
        cursor = database.execute_sql(
            f"""WITH {turns}
                SELECT model_name, SUM(requests), SUM(CASE WHEN status IN ('error', 'interrupted') THEN requests ELSE 0 END),
                       SUM(ttft_count), SUM(duration_count), SUM(timed_tokens), SUM(timed_ms)
                FROM turns WHERE status NOT IN ('refused', 'pending') GROUP BY model_name""",
            params,
        )
        return {model: tuple(row) for model, *row in cursor}

    def _percentiles_in_range(self) -> dict[tuple[str, str], dict[int, int]]:
        """The range's times to first token and answer times, ranked here: a range is read whole
        either way (through the created_at index), and Python sorts its values several times
        faster than SQLite sorts them on this kind of machine (bench queries, one week)."""
        where, params = self._where("created_at")
        cursor = database.execute_sql(
            f"""SELECT model_name, ttft_ms, duration_ms FROM interactions
                WHERE {where} AND status NOT IN ('refused', 'pending')""",
            params,
        )
        values: dict[tuple[str, str], list[int]] = {}
        for model, ttft, duration in cursor:
            if ttft is not None:
                values.setdefault((model, "ttft_ms"), []).append(ttft)
            if duration is not None:
                values.setdefault((model, "duration_ms"), []).append(duration)
        return {key: {p: _percentile(sorted(found), p) for p in PERCENTS} for key, found in values.items()}

    def active_users_by_day(self) -> list[dict]:
        """Users who sent at least one message, per UTC day."""
        sql, params = self._rolled_and_live(
            rollup.bring_up_to_date(), "SELECT day, active_users FROM report_day_users", rollup.active_users_sql
        )
        cursor = database.execute_sql(sql + " ORDER BY 1", params)
        return [{"day": day, "active_users": users} for day, users in cursor]

    def recent_errors(self, limit: int = 50) -> list[dict]:
        where, params = self._where("e.created_at")
        cursor = database.execute_sql(
            f"""SELECT e.created_at, e.error_id, e.location, e.exception_type, e.message, u.username,
                       e.request_id, e.traceback
                FROM error_events e LEFT JOIN users u ON u.id = e.user_id
                WHERE {where} ORDER BY e.created_at DESC, e.id DESC LIMIT ?""",
            params + [limit],
        )
        keys = ("created_at", "error_id", "location", "exception_type", "message", "username", "request_id", "traceback")
        return [dict(zip(keys, row)) for row in cursor]

    def full(self) -> dict:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "requests_by_model": self.requests_by_model(),
            "credits_by_user": self.credits_by_user(),
            "requests_by_source": self.requests_by_source(),
            "requests_per_day": self.requests_per_day(),
            "errors": self.recent_errors(),
            "model_performance": self.model_performance(),
            "active_users_by_day": self.active_users_by_day(),
        }
