"""Admin reports over a date range: one class, one method per report, each returning plain rows.

Days that can no longer change come from the roll-up (store/rollup.py), the days after them from
the interaction log and the ledger (store/report_queries.py); the two never overlap, so every
figure is exact.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..errors import ValidationError
from ..store import report_queries as queries
from ..store import rollup
from ..store.db import read_snapshot


def parse_date(value: str | None, what: str) -> dt.date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValidationError(
            "{what} must be a date as YYYY-MM-DD; got {value!r}.", what=what, value=str(value)[:40]
        ) from None


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
    """Every turn's percentiles, model by model, each looked up by its rank. Needs `counts` from
    the same snapshot: a rank out by one is another value."""
    found = {}
    for model, (_, _, ttft_count, duration_count, _, _) in counts.items():
        for column, count in (("ttft_ms", ttft_count), ("duration_ms", duration_count)):
            values = found.setdefault((model, column), {})
            for percent in PERCENTS:
                if not count:
                    continue
                value = queries.select_timing_at_rank(model, column, _rank(count, percent), count)
                if value is None:  # only if a settled day was edited by hand (store/rollup.py)
                    raise RuntimeError(
                        "The report's roll-up no longer matches the log: run store.rollup.clear_rollup()."
                    )
                values[percent] = value
    return found


@dataclass(frozen=True)
class Reports:
    """Reports for [since, until], both days included, in UTC. None means unbounded."""

    since: dt.date | None = None
    until: dt.date | None = None

    @classmethod
    def for_range(cls, since=None, until=None, *, names: tuple[str, str] = ("--since", "--until")) -> "Reports":
        """The report of a date range; `names` are the fields' names in a message (the CLI's flags, the UI's labels)."""
        since, until = parse_date(since, names[0]), parse_date(until, names[1])
        if since and until and since > until:
            raise ValidationError("The start date {since} is after the end date {until}.", since=since, until=until)
        return cls(since, until)

    def requests_by_model(self) -> list[dict]:
        rows = queries.count_requests_by_model(self.since, self.until, rollup.bring_up_to_date())
        keys = ("model", "requests", "ok", "stopped", "failed", "refused", "credits")
        return [dict(zip(keys, row)) for row in rows]

    def credits_by_user(self) -> list[dict]:
        rows = queries.sum_credits_by_user(self.since, self.until, rollup.bring_up_to_date())
        keys = ("username", "credits_spent", "credits_topped_up", "credits_granted", "balance", "requests")
        return [dict(zip(keys, row)) for row in rows]

    def requests_by_source(self) -> list[dict]:
        """Chat window ("ui") against the /v1 API ("api"), per model."""
        rows = queries.count_requests_by_source(self.since, self.until, rollup.bring_up_to_date())
        return [dict(zip(("source", "model", "requests", "credits"), row)) for row in rows]

    def requests_per_day(self) -> list[dict]:
        rows = queries.count_requests_per_day(self.since, self.until, rollup.bring_up_to_date())
        return [dict(zip(("day", "model", "requests"), row)) for row in rows]

    def model_performance(self) -> list[dict]:
        """Per model: requests that ran (refused ones did not), error rate, time to first token
        (median, p95), decode speed and answer time (median, p95), from the interaction log."""
        rollup.bring_up_to_date()
        # One snapshot: the percentiles are found by rank, so the counts must be of the same rows.
        with read_snapshot():
            through = rollup.rolled_up_through()
            counts = queries.count_performance_by_model(self.since, self.until, through)
            every_turn = self.since is None and self.until is None
            if counts and not every_turn:  # a range around every turn there is counts the same
                every_turn = counts == queries.count_performance_by_model(None, None, through)
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

    def _percentiles_in_range(self) -> dict[tuple[str, str], dict[int, int]]:
        """The range's times to first token and answer times, ranked here: a range is read whole
        either way (through the created_at index), and Python sorts its values several times
        faster than SQLite sorts them on this kind of machine (bench queries, one week)."""
        values: dict[tuple[str, str], list[int]] = {}
        for model, ttft, duration in queries.iter_timings(self.since, self.until):
            if ttft is not None:
                values.setdefault((model, "ttft_ms"), []).append(ttft)
            if duration is not None:
                values.setdefault((model, "duration_ms"), []).append(duration)
        return {key: {p: _percentile(sorted(found), p) for p in PERCENTS} for key, found in values.items()}

    def active_users_by_day(self) -> list[dict]:
        """Users who sent at least one message, per UTC day."""
        rows = queries.count_active_users_by_day(self.since, self.until, rollup.bring_up_to_date())
        return [{"day": day, "active_users": users} for day, users in rows]

    def recent_errors(self, limit: int = 50) -> list[dict]:
        rows = queries.select_recent_errors(self.since, self.until, limit)
        keys = ("created_at", "error_id", "location", "exception_type", "message", "username", "request_id", "traceback")
        return [dict(zip(keys, row)) for row in rows]

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
