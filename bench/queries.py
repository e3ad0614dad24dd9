"""Queries at scale: a generated database of 10,000 users and 1,000,000 chat turns with their holds
and ledger entries, then a history page, the admin report and verify, timed through the app's own
functions, with SQLite's query plans.

The data is consistent with the ledger (each charged turn has its captured hold and one charge
entry; every balance is the sum of its entries), so `verify` must pass on it. It is written with
raw SQL in one transaction, with the schema's indexes dropped during the load and recreated from
their own CREATE statements, so the indexes are exactly the app's.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import sqlite3
import statistics
from pathlib import Path

from .chats import add_conversations, measure_chats
from .common import Options, ms, now, summary_ms

FULL_SCALE = (10_000, 1_000_000)
QUICK_SCALE = (1_000, 20_000)
SPAN_DAYS = 180
PRICES = {"mini": 1, "pro": 3}
MODEL_NAMES = {"mini": "Gemma 3 1B", "pro": "Gemma 3 12B Q8_0"}
PASSWORD_HASH = "$2b$12$" + "x" * 53  # never checked here
SIGNUP_CREDITS = 10

_WORDS = (
    "the model answer question river stone lantern orchard copper meadow violin harbor thunder pepper "
    "glacier saddle planet history engine water cycle capital market garden winter summer music number "
    "language bridge castle dragon forest ocean mountain light energy ancient modern simple because"
).split()


def _texts(rng: random.Random, count: int, low: int, high: int) -> list[str]:
    texts = []
    for _ in range(count):
        target = rng.randint(low, high)
        words = []
        length = 0
        while length < target:
            word = rng.choice(_WORDS)
            words.append(word)
            length += len(word) + 1
        texts.append(" ".join(words).capitalize() + ".")
    return texts


# The columns each generated table is written with (SQLite here, PostgreSQL in bench/postgres.py).
COLUMNS = {
    "users": ("id", "username", "password_hash", "is_admin", "balance", "held", "created_at"),
    "interactions": ("request_id", "user_id", "tier", "model_name", "prompt", "answer", "status", "credits_charged",
                     "prompt_tokens", "completion_tokens", "ttft_ms", "duration_ms", "error_id", "created_at",
                     "finished_at"),
    "holds": ("request_id", "user_id", "amount", "status", "created_at", "settled_at", "release_reason"),
    "ledger_entries": ("user_id", "amount", "kind", "balance_after", "request_id", "note", "actor_id", "created_at"),
    "error_events": ("error_id", "location", "exception_type", "message", "traceback", "user_id", "request_id",
                     "created_at"),
}


def generate_rows(users: int, turns: int, *, seed: int = 5) -> dict:
    """The dataset as rows per table (in COLUMNS order), the same for a given seed on every engine."""
    rng = random.Random(seed)
    end = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    start = end - dt.timedelta(days=SPAN_DAYS)

    # Who chats when: a few heavy users, a long tail (Zipf-like activity), times spread over the span.
    weights = [1.0 / (rank**0.6) for rank in range(1, users + 1)]
    user_ids = list(range(1, users + 1))
    rng.shuffle(user_ids)
    owners = rng.choices(user_ids, weights=weights, k=turns)
    seconds = sorted(rng.random() * SPAN_DAYS * 86400 for _ in range(turns))
    prompts = _texts(rng, 64, 20, 240)
    answers = _texts(rng, 64, 60, 1400)

    statuses = rng.choices(["ok", "stopped", "error", "refused"], weights=[90, 2, 3, 5], k=turns)
    tiers = rng.choices(["mini", "pro"], weights=[80, 20], k=turns)
    charges_by_user = [0] * (users + 1)
    interactions, holds, charges, errors = [], [], [], []
    for i in range(turns):
        user, status, tier = owners[i], statuses[i], tiers[i]
        created = start + dt.timedelta(seconds=seconds[i])
        created_text = str(created)
        request_id = f"{i:032x}"
        price = PRICES[tier]
        duration = rng.randint(300, 30_000)
        finished_text = str(created + dt.timedelta(milliseconds=duration))
        prompt, answer = prompts[i % 64], answers[(i * 7) % 64]
        charged = price if status in ("ok", "stopped") else 0
        error_id = f"E{i:07X}" if status == "error" else None
        tokens = (rng.randint(10, 400), rng.randint(5, 500)) if status != "refused" else (None, None)
        interactions.append(
            (request_id, user, tier, MODEL_NAMES[tier], prompt, answer if status in ("ok", "stopped") else "",
             status, charged, tokens[0], tokens[1], 100 if status != "refused" else None,
             duration if status != "refused" else None, error_id, created_text, finished_text)
        )
        if status != "refused":
            holds.append(
                (request_id, user, price, "captured" if charged else "released", created_text, finished_text,
                 None if charged else status)
            )
        if charged:
            charges_by_user[user] += price
            charges.append((user, price, request_id, finished_text))
        if error_id:
            errors.append((error_id, f"chat:{tier}", "GenerationError", "llama_decode returned 1",
                           "Traceback (most recent call last):\n  ...\nRuntimeError: llama_decode returned 1",
                           user, request_id, finished_text))

    # Accounts, their signup and top-up entries (before the span), then the charges in time order.
    extras = [0] + [rng.randint(0, 100) for _ in range(users)]
    balances = [0] * (users + 1)
    account_rows, entry_rows = [], []
    for user in range(1, users + 1):
        joined = str(start - dt.timedelta(days=rng.randint(1, 30)))
        topup = charges_by_user[user] + extras[user]
        balances[user] = SIGNUP_CREDITS + topup
        account_rows.append((user, f"user{user:05d}", PASSWORD_HASH, int(user == 1), SIGNUP_CREDITS + extras[user], 0, joined))
        entry_rows.append((user, SIGNUP_CREDITS, "signup", SIGNUP_CREDITS, None, "starting balance", None, joined))
        if topup:
            entry_rows.append((user, topup, "topup", balances[user], None, None, user, joined))
    for user, price, request_id, when in charges:
        balances[user] -= price
        entry_rows.append((user, -price, "charge", balances[user], request_id, None, None, when))
    return {
        "tables": {"users": account_rows, "interactions": interactions, "holds": holds, "ledger_entries": entry_rows,
                   "error_events": errors},
        "last_day": end.date().isoformat(),
        "weights": weights,
        "user_ids": user_ids,
    }


def generate_database(path: Path, users: int, turns: int, *, seed: int = 5) -> dict:
    """Write the dataset; returns what was written and how long it took."""
    from gemma_chat.store.db import close_database, open_database

    started = now()
    open_database(path)  # the app's schema, every migration applied
    close_database()
    rows = generate_rows(users, turns, seed=seed)
    tables = rows["tables"]

    connection = sqlite3.connect(str(path), isolation_level=None)
    connection.executescript(
        "PRAGMA journal_mode = off; PRAGMA synchronous = off; PRAGMA cache_size = -1000000; "
        "PRAGMA temp_store = memory; PRAGMA foreign_keys = off;"
    )
    indexes = connection.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "AND tbl_name IN ('users', 'holds', 'ledger_entries', 'interactions', 'error_events')"
    ).fetchall()
    connection.execute("BEGIN")
    for name, _ in indexes:
        connection.execute(f'DROP INDEX "{name}"')
    for table in ("users", "interactions", "holds", "ledger_entries", "error_events"):
        columns = COLUMNS[table]
        connection.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", tables[table]
        )
    for _, sql in indexes:
        connection.execute(sql)
    connection.execute("COMMIT")
    connection.execute("PRAGMA journal_mode = wal")
    connection.close()
    return {
        "users": users,
        "interactions": turns,
        "holds": len(tables["holds"]),
        "ledger_entries": len(tables["ledger_entries"]),
        "error_events": len(tables["error_events"]),
        "span_days": SPAN_DAYS,
        "last_day": rows["last_day"],
        "file_bytes": path.stat().st_size,
        "generate_s": round(now() - started, 2),
        "weights": rows["weights"],
        "user_ids": rows["user_ids"],
    }


class _CapturedSql(logging.Handler):
    """peewee logs every statement it runs at DEBUG: keep them to EXPLAIN afterwards."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.statements: list[tuple[str, tuple]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, tuple) and len(record.msg) == 2:
            sql, params = record.msg
            self.statements.append((sql, tuple(params or ())))


def capture_statements(function) -> list[tuple[str, tuple]]:
    logger = logging.getLogger("peewee")
    handler = _CapturedSql()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        function()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    return handler.statements


_FROM = re.compile(r'\b(?:FROM|JOIN)\s+"?(\w+)"?(?:\s+(?:AS\s+)?"?(\w+)"?)?', re.IGNORECASE)


def query_plans(statements: list[tuple[str, tuple]]) -> list[dict]:
    """EXPLAIN QUERY PLAN for each distinct SELECT. A step that reads a whole table row by row
    ("SCAN holds", not "SCAN ... USING INDEX") is listed in table_scans; CTEs are not tables."""
    from gemma_chat.store.db import database

    tables = {row[0] for row in database.execute_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
    plans, seen = [], set()
    for sql, params in statements:
        if not sql.lstrip().upper().startswith(("SELECT", "WITH")) or sql in seen:
            continue
        seen.add(sql)
        aliases = {}
        for table, alias in _FROM.findall(sql):
            if table in tables:
                aliases[table] = table
                if alias and alias.upper() not in ("WHERE", "LEFT", "JOIN", "ON", "GROUP", "ORDER", "INNER"):
                    aliases[alias] = table
        steps = [row[3] for row in database.execute_sql("EXPLAIN QUERY PLAN " + sql, params)]
        scans = []
        for step in steps:
            words = step.split()
            if words[0] == "SCAN" and "INDEX" not in step and words[1] in aliases:
                scans.append(aliases[words[1]])
        plans.append({"sql": " ".join(sql.split())[:400], "plan": steps, "table_scans": scans})
    return plans


def _history_sample(rng: random.Random, dataset: dict, calls: int) -> list[tuple[int, int | str]]:
    """Users weighted by activity (the ones who look at history); mostly page 1, some deep pages."""
    users = rng.choices(dataset["user_ids"], weights=dataset["weights"], k=calls)
    sample = []
    for user in users:
        roll = rng.random()
        page: int | str = 1 if roll < 0.8 else ("last" if roll < 0.9 else "random")
        sample.append((user, page))
    return sample


def measure_queries(options: Options) -> dict:
    from gemma_chat.config import load_settings
    from gemma_chat.chats.conversations import conversation_turns, list_conversations
    from gemma_chat.store.db import close_database, database, open_database
    from gemma_chat.chats.history import list_history
    from gemma_chat.billing.ledger import verify_ledger
    from gemma_chat.store.db import check_integrity
    from gemma_chat.store import rollup
    from gemma_chat.ops.reports import Reports
    from gemma_chat.billing.statement import list_statement, totals_by_kind
    from gemma_chat.ops.verify import verify_database

    users, turns = QUICK_SCALE if options.quick else FULL_SCALE
    path = options.work_dir / "scale" / "gemma_chat.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    options.say(f"  generating {users:,} users and {turns:,} turns…")
    dataset = generate_database(path, users, turns)
    options.say(f"  generated in {dataset['generate_s']} s ({dataset['file_bytes'] / 1e6:,.0f} MB)")
    options.say("  grouping the turns into chats…")
    chat_dataset = add_conversations(path)
    settings = load_settings(data_dir=path.parent, env={})
    open_database(path)
    try:
        page_size = settings.history_page_size
        counts = dict(database.execute_sql("SELECT user_id, COUNT(*) FROM interactions GROUP BY user_id").fetchall())
        rng = random.Random(7)
        history_times, deep_times = [], []
        calls = 200 if options.quick else 1000
        for user, page in _history_sample(rng, dataset, calls):
            pages = max(1, -(-counts.get(user, 0) // page_size))
            number = pages if page == "last" else (rng.randint(1, pages) if page == "random" else 1)
            began = now()
            result = list_history(user, number, page_size)
            elapsed = now() - began
            (history_times if number == 1 else deep_times).append(elapsed)
            assert result.page == number
        all_history = history_times + deep_times
        heaviest = max(counts, key=counts.get)
        history_plans = query_plans(capture_statements(lambda: list_history(heaviest, 1, page_size)))

        last_day = dt.date.fromisoformat(dataset["last_day"])
        week = (last_day - dt.timedelta(days=6), last_day)
        # The first report sums every settled day into the roll-up: once per database, then a day a day.
        began = now()
        rollup.bring_up_to_date()
        rollup_fill_s = now() - began
        reports = {"rollup_first_fill_ms": ms(rollup_fill_s)}
        for label, (since, until) in {"all_time": (None, None), "one_week": week}.items():
            report = Reports.for_range(since, until)
            parts = {}
            for part in ("requests_by_model", "credits_by_user", "requests_by_source", "requests_per_day",
                         "recent_errors", "model_performance", "active_users_by_day"):
                durations = []
                for _ in range(1 if options.quick else 3):
                    began = now()
                    getattr(report, part)()
                    durations.append(now() - began)
                parts[part] = ms(statistics.median(durations))
            totals = []
            for _ in range(1 if options.quick else 3):
                began = now()
                full = report.full()
                totals.append(now() - began)
            reports[label] = {
                "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None,
                "total_ms": ms(statistics.median(totals)),
                "parts_ms": parts,
                "rows": {key: len(value) for key, value in full.items() if isinstance(value, list)},
            }
        report_plans = query_plans(capture_statements(lambda: Reports.for_range().full()))
        week_plans = query_plans(capture_statements(lambda: Reports.for_range(*week).full()))

        began = now()
        problems = verify_database(settings)
        verify_s = now() - began
        began = now()
        check_integrity()
        integrity_s = now() - began
        began = now()
        verify_ledger(stale_after_s=settings.stale_hold_s)
        ledger_s = now() - began
        verify_plans = query_plans(capture_statements(lambda: verify_ledger(stale_after_s=settings.stale_hold_s)))
        statement_times = []
        for user, page in _history_sample(random.Random(13), dataset, calls):  # the Top up tab's view
            entries = database.execute_sql("SELECT COUNT(*) FROM ledger_entries WHERE user_id = ?", (user,)).fetchone()[0]
            pages = max(1, -(-entries // page_size))
            number = pages if page == "last" else (rng.randint(1, pages) if page == "random" else 1)
            began = now()
            list_statement(user, number, page_size)
            totals_by_kind(user)
            statement_times.append(now() - began)
        statement_plans = query_plans(capture_statements(lambda: (list_statement(heaviest, 1, page_size), totals_by_kind(heaviest))))
        chats = measure_chats(options, chat_dataset)
        long_chat = chat_dataset["long_chat"]
        heavy_user = max(chat_dataset["chats_per_user"], key=chat_dataset["chats_per_user"].get)
        chat_plans = query_plans(capture_statements(lambda: list_conversations(heavy_user, 1, 20)))
        chat_plans += query_plans(
            capture_statements(lambda: conversation_turns(long_chat["user_id"], long_chat["conversation_id"]))
        )
    finally:
        close_database()
    # SQLite's lighter check (no index-against-table comparison) on a plain connection, for scale.
    connection = sqlite3.connect(str(path))
    try:
        began = now()
        connection.execute("PRAGMA quick_check").fetchall()
        quick_check_s = now() - began
    finally:
        connection.close()

    all_plans = history_plans + report_plans + week_plans + verify_plans + chat_plans + statement_plans
    dataset = {k: v for k, v in dataset.items() if k not in ("weights", "user_ids")}
    return {
        "dataset": dataset,
        "history": {
            "page_size": page_size,
            "all": summary_ms(all_history),
            "first_page": summary_ms(history_times),
            "deeper_pages": summary_ms(deep_times),
            "heaviest_user_turns": counts[heaviest],
        },
        "report": reports,
        "verify": {
            "total_ms": ms(verify_s),
            "integrity_check_ms": ms(integrity_s),
            "ledger_invariant_ms": ms(ledger_s),
            "raw_quick_check_ms": ms(quick_check_s),
            "file_bytes": path.stat().st_size,
            "problems": problems[:10],
            "passed": not problems,
        },
        "chats": chats,
        "statement": {"ledger_entries": dataset["ledger_entries"], **summary_ms(statement_times)},
        "plans": {"statement": statement_plans, "chats": chat_plans, "history": history_plans, "report_all_time": report_plans, "report_one_week": week_plans, "verify": verify_plans},
        "table_scans": sorted({scan for plan in all_plans for scan in plan["table_scans"]}),
    }
