"""PostgreSQL 15: the ledger cycle and the history/report queries through the app, beside raw psycopg
sending the same statements, on a server this section starts (tests/postgres.py, fsync on).

- Ledger: one cycle is what a chat turn writes (bench/ledger.py: hold + pending interaction row in
  one transaction, capture + charge entry + finished row in another). Ours calls the app's
  functions (bench.ledger.ours_cycles); raw sends the statements the app sends (checked against
  what Peewee logs for one cycle), in the same two transactions, on one psycopg connection per
  client. Clients are threads (the app's own model: one process, a thread pool, a connection per
  thread), plus 8 processes and 8 threads on one shared user; with fsync on (a commit waits for the
  disk) and off (what is left is the client's own cost). `verify_ledger()` and an exact count of
  charges afterwards, as for SQLite.
- Queries: the queries section's dataset (generate_rows, same seed: 10,000 users, 1,000,000 turns)
  bulk-loaded with COPY after `open_database(url)` migrated the schema, the schema's own indexes
  rebuilt, then VACUUM ANALYZE (what autovacuum would have done on a server that has been
  running). The history page through `list_history` against raw psycopg sending its two
  statements, with 1 and 8 clients; the admin report (`Reports.full()`, all time and the last
  week) part by part against the same statements fetched raw, with EXPLAIN (ANALYZE, BUFFERS).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import multiprocessing
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from .common import Options, ms, now, ratio, summary_ms
from .ledger import ANSWER, BUSY_TIMEOUT_MS, PRICE, PROMPT, check_money, ours_cycle, ours_cycles, prepare_database
from .queries import COLUMNS, FULL_SCALE, QUICK_SCALE, _history_sample, capture_statements, generate_rows

SERVER_FACTS = ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "shared_buffers", "work_mem",
                "effective_cache_size", "max_parallel_workers_per_gather", "jit", "random_page_cost")

# --- the ledger cycle ---------------------------------------------------------------------------------

# What the app sends for one cycle, in order, less Peewee's BEGIN/COMMIT and its savepoints
# (ledger.hold_credits, interactions.start_interaction | ledger.capture_hold, interactions.finish_interaction).
RAW_HOLD = (
    "UPDATE users SET held = held + %s WHERE id = %s AND balance - held >= %s",
    "INSERT INTO holds (request_id, user_id, amount, status, created_at, instance_id) "
    "VALUES (%s, %s, %s, 'active', %s, %s) RETURNING id",
    "INSERT INTO interactions (request_id, user_id, tier, model_name, prompt, answer, status, credits_charged, "
    "created_at, conversation_id, replaces_id, source) VALUES (%s, %s, %s, %s, %s, '', 'pending', 0, %s, %s, %s, %s) "
    "RETURNING id",
)
RAW_CAPTURE = (
    "UPDATE holds SET status = %s, settled_at = %s, release_reason = %s WHERE request_id = %s AND status = 'active' "
    "RETURNING id, user_id, amount",
    "UPDATE users SET balance = balance + %s, held = held - %s WHERE id = %s AND balance + %s >= held - %s "
    "AND held - %s >= 0 RETURNING balance",
    "INSERT INTO ledger_entries (user_id, amount, kind, balance_after, request_id, note, actor_id, created_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
    "UPDATE interactions SET status = %s, answer = %s, credits_charged = %s, prompt_tokens = %s, "
    "completion_tokens = %s, ttft_ms = %s, duration_ms = %s, error_id = %s, finished_at = %s "
    "WHERE request_id = %s AND status = 'pending'",
)


def _timestamp() -> str:
    from gemma_chat.store.db import utcnow

    return str(utcnow())


def _one_line(sql: str) -> str:
    return " ".join(sql.split())


def raw_connection(url: str):
    import psycopg

    connection = psycopg.connect(url, autocommit=True)  # as Peewee's: BEGIN and COMMIT are sent by hand
    connection.execute(f"SET lock_timeout = {BUSY_TIMEOUT_MS}")  # as the app's connection
    return connection


def raw_cycles(url: str, user_id: int, deadline: float, *, savepoints: bool = False, connection=None) -> tuple[int, int]:
    """The statements of ours_cycles on one psycopg connection, until `deadline` (time.time()).

    `savepoints`: also Peewee's SAVEPOINT / RELEASE round trips around the nested transactions
    (hold_credits, capture_hold, finish_interaction), to tell their cost from the rest of ours'.
    """
    hold, start_turn, log_turn = RAW_HOLD
    settle, charge, entry, finish = RAW_CAPTURE
    connection = connection or raw_connection(url)
    cursor = connection.cursor()
    execute = cursor.execute

    def savepoint() -> str | None:
        if not savepoints:
            return None
        name = f'"s{uuid.uuid4().hex}"'
        execute(f"SAVEPOINT {name}")
        return name

    def release(name: str | None) -> None:
        if name:
            execute(f"RELEASE SAVEPOINT {name}")

    cycles = errors = 0
    try:
        while time.time() < deadline:
            request_id = uuid.uuid4().hex
            try:
                execute("BEGIN")
                try:
                    nested = savepoint()
                    execute(hold, (PRICE, user_id, PRICE))
                    if cursor.rowcount != 1:
                        raise RuntimeError("insufficient credits")
                    execute(start_turn, (request_id, user_id, PRICE, _timestamp(), None))
                    cursor.fetchone()
                    release(nested)
                    execute(log_turn, (request_id, user_id, "mini", "bench", PROMPT, _timestamp(), None, None, "ui"))
                    cursor.fetchone()
                    execute("COMMIT")
                except BaseException:
                    execute("ROLLBACK")
                    raise
                execute("BEGIN")
                try:
                    nested = savepoint()
                    execute(settle, ("captured", _timestamp(), None, request_id))
                    _, hold_user, amount = cursor.fetchone()
                    execute(charge, (-amount, amount, hold_user, -amount, amount, amount))
                    (balance,) = cursor.fetchone()
                    execute(entry, (hold_user, -amount, "charge", balance, request_id, None, None, _timestamp()))
                    cursor.fetchone()
                    release(nested)
                    nested = savepoint()
                    execute(finish, ("ok", ANSWER, amount, 12, 8, 40, 160, None, _timestamp(), request_id))
                    release(nested)
                    execute("COMMIT")
                except BaseException:
                    execute("ROLLBACK")
                    raise
            except Exception:  # noqa: BLE001 — counted; check_money shows whether money moved
                errors += 1
                continue
            cycles += 1
    finally:
        connection.close()
    return cycles, errors


def ledger_statements(url: str) -> dict:
    """What Peewee sends for one cycle of ours against RAW_HOLD + RAW_CAPTURE: the same statements?"""
    from gemma_chat.store.db import close_database, open_database

    user_id = prepare_database(url, 1)[0]
    open_database(url, migrate=False)
    ours_cycle(user_id)  # the connection's first statements are not the cycle's
    try:
        sent = capture_statements(lambda: ours_cycle(user_id))
    finally:
        close_database()
    savepoints = [sql for sql, _ in sent if sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE"))]
    statements = [_one_line(sql) for sql, _ in sent if sql not in savepoints]
    expected = [_one_line(sql) for sql in RAW_HOLD + RAW_CAPTURE]
    # Where raw_cycles(savepoints=True) puts them: around hold_credits, capture_hold, finish_interaction.
    shape = [sql.split()[0].upper() if sql in savepoints else "statement" for sql, _ in sent]
    expected_shape = ["SAVEPOINT", "statement", "statement", "RELEASE", "statement",
                      "SAVEPOINT", "statement", "statement", "statement", "RELEASE", "SAVEPOINT", "statement", "RELEASE"]
    return {
        "same_statements": statements == expected,
        "savepoints_where_raw_savepoints_puts_them": shape == expected_shape,
        "differences": [[ours, raw] for ours, raw in zip(statements, expected) if ours != raw][:3]
        + ([["(count)", f"ours {len(statements)}, raw {len(expected)}"]] if len(statements) != len(expected) else []),
        # Round trips per cycle: the statements, BEGIN and COMMIT twice, and ours' savepoints.
        "round_trips_raw": len(expected) + 4,
        "round_trips_ours": len(statements) + len(savepoints) + 4,
        "savepoint_statements_ours": len(savepoints),
    }


def _process_worker(side: str, url: str, user_id: int, start_at: float, duration: float) -> tuple[int, int, float, float, float]:
    """In a spawned process: connect (imports done), wait for the common start, then run one side's
    loop; returns its cycles, errors, start, end and CPU time."""
    from gemma_chat.store.db import open_database, utcnow

    utcnow()
    if side == "ours":
        open_database(url, busy_timeout_ms=BUSY_TIMEOUT_MS, migrate=False)
    else:
        connection = raw_connection(url)
    time.sleep(max(0.0, start_at - time.time()))
    began, cpu = time.time(), time.process_time()
    deadline = began + duration
    if side == "ours":
        cycles, errors = ours_cycles(user_id, deadline)
    else:
        cycles, errors = raw_cycles(url, user_id, deadline, connection=connection)
    return cycles, errors, began, time.time(), time.process_time() - cpu


def run_ledger_config(url: str, side: str, mode: str, workers: int, shared: bool, duration: float) -> dict:
    """One side of one configuration on a fresh database: cycles/s and the money check."""
    from gemma_chat.store.db import close_database, open_database

    accounts = prepare_database(url, 1 if shared else workers)
    users = [accounts[0]] * workers if shared else accounts
    if mode == "processes":
        context = multiprocessing.get_context("spawn")
        start_at = time.time() + 2.5  # after every process has started and imported
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(_process_worker, side, url, user, start_at, duration) for user in users]
            results = [f.result() for f in futures]
        counts = [(r[0], r[1]) for r in results]
        elapsed = max(r[3] for r in results) - min(r[2] for r in results)
        cpu = sum(r[4] for r in results)
    else:
        if side == "ours":
            open_database(url, busy_timeout_ms=BUSY_TIMEOUT_MS, migrate=False)
        counts: list[tuple[int, int]] = [(0, 0)] * workers
        began, cpu = time.time(), time.process_time()
        deadline = began + duration

        def work(index: int) -> None:
            user = users[index]
            if side == "ours":
                counts[index] = ours_cycles(user, deadline)
            else:
                counts[index] = raw_cycles(url, user, deadline, savepoints=side == "raw_savepoints")

        threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed, cpu = time.time() - began, time.process_time() - cpu
        close_database()
    cycles_by_user: dict[int, int] = {}
    for user, (cycles, _) in zip(users, counts):
        cycles_by_user[user] = cycles_by_user.get(user, 0) + cycles
    total = sum(c for c, _ in counts)
    return {
        "side": side, "mode": mode, "workers": workers, "shared_user": shared,
        "cycles": total, "errors": sum(e for _, e in counts), "seconds": round(elapsed, 3),
        "cycles_per_s": round(total / elapsed, 1) if elapsed else None,
        # The clients' own CPU (user + system) per cycle: steadier than cycles/s on a shared machine.
        "client_cpu_ms_per_cycle": round(cpu / total * 1000, 3) if total else None,
        **check_money(url, cycles_by_user),
    }


def _config_name(mode: str, workers: int, shared: bool, fsync: bool) -> str:
    clients = "1 thread" if workers == 1 else f"{workers} {mode}" + (", one shared user" if shared else "")
    return f"{clients}, fsync {'on' if fsync else 'off'}"


def measure_ledger(server, template: str, options: Options) -> dict:
    duration = 0.6 if options.quick else 3.0
    rounds = 1 if options.quick else 2  # raw, ours, ours, raw: the shared machine weighs on both
    fsync = not options.quick
    configs = [("threads", 1, False, fsync), ("threads", 8, False, fsync)]
    if not options.quick:
        configs += [("threads", 8, True, True), ("processes", 8, False, True),
                    ("threads", 1, False, False), ("threads", 8, False, False)]
    statements = ledger_statements(copy_of(server, template))
    runs, table = [], []
    for mode, workers, shared, fsync in configs:
        set_fsync(server, fsync)
        name = _config_name(mode, workers, shared, fsync)
        order = ["raw", "raw_savepoints", "ours"] if workers == 1 and not options.quick else ["raw", "ours"]
        sides = {side: [] for side in order}
        for round_ in range(rounds):
            for side in order if round_ % 2 == 0 else order[::-1]:
                options.say(f"  ledger {side:14s} {name}…")
                run = run_ledger_config(copy_of(server, template), side, mode, workers, shared, duration)
                run["config"] = name
                runs.append(run)
                sides[side].append(run)

        def rate(side_runs):
            seconds = sum(r["seconds"] for r in side_runs)
            return round(sum(r["cycles"] for r in side_runs) / seconds, 1) if seconds else None

        def cpu(side_runs):
            cycles = sum(r["cycles"] for r in side_runs)
            spent = sum(r["client_cpu_ms_per_cycle"] * r["cycles"] for r in side_runs if r["cycles"])
            return round(spent / cycles, 3) if cycles else None

        everything = [run for side_runs in sides.values() for run in side_runs]
        extra = {}
        if "raw_savepoints" in sides:
            extra = {"raw_savepoints_cycles_per_s": rate(sides["raw_savepoints"]),
                     "raw_savepoints_client_cpu_ms_per_cycle": cpu(sides["raw_savepoints"])}
        table.append({
            "config": name,
            "load_average_1min": round(os.getloadavg()[0], 2),
            "raw_cycles_per_s": rate(sides["raw"]),
            "ours_cycles_per_s": rate(sides["ours"]),
            "ratio": ratio(rate(sides["ours"]), rate(sides["raw"])),
            "raw_client_cpu_ms_per_cycle": cpu(sides["raw"]),
            "ours_client_cpu_ms_per_cycle": cpu(sides["ours"]),
            "verify_ok": all(r["verify_ok"] for r in everything),
            "lost_credits": sum(r["lost_credits"] for r in everything),
            "doubled_credits": sum(r["doubled_credits"] for r in everything),
            "errors": sum(r["errors"] for r in everything),
            **extra,
        })
    set_fsync(server, server.fsync)
    return {"seconds_per_run": duration, "rounds": rounds, "price": PRICE, "statements": statements,
            "runs": runs, "table": table}


# --- the server -------------------------------------------------------------------------------------


def set_fsync(server, on: bool) -> None:
    """fsync is a reload-time setting: the running server changes without a restart."""
    server.admin_sql(f"ALTER SYSTEM SET fsync = {'on' if on else 'off'}")
    server.admin_sql("SELECT pg_reload_conf()")
    for _ in range(50):  # a backend rereads the file when it next goes idle: new connections see it at once
        if _show(server.url("postgres"), "fsync") == ("on" if on else "off"):
            return
        time.sleep(0.05)
    raise RuntimeError("the server did not take the new fsync setting")


class ServerCpu:
    """User CPU of the server (postmaster, its live backends, the ones it has reaped): pg_ctl
    daemonises it, so it is no child of ours and the section's CPU check would count it as foreign."""

    def __init__(self, data_dir: Path):
        import psutil

        self._process = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
        self.started = self._used()

    def _used(self) -> float:
        times = self._process.cpu_times()
        live = 0.0
        for child in self._process.children():
            try:
                live += child.cpu_times().user
            except Exception:  # noqa: BLE001 — a backend that just exited is in children_user next time
                pass
        return times.user + times.children_user + live

    def seconds(self) -> float:
        return round(self._used() - self.started, 2)


def schema_template(server) -> str:
    """A database with the app's schema, to copy: CREATE DATABASE … TEMPLATE instead of migrating each time."""
    from gemma_chat.store.db import close_database, open_database

    url = server.fresh_database()
    open_database(url)
    close_database()
    return urlsplit(url).path.lstrip("/")


def copy_of(server, template: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    server.admin_sql(f"CREATE DATABASE {name} TEMPLATE {template}")
    return server.url(name)


def _show(url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(f"SHOW {name}").fetchone()[0]


def server_facts(url: str) -> dict:
    return {name: _show(url, name) for name in SERVER_FACTS}


# --- the dataset --------------------------------------------------------------------------------------


def load_dataset(server, template: str, users: int, turns: int) -> tuple[str, dict]:
    """A database with the app's schema and the queries section's rows; its URL and what was written."""
    import psycopg

    started = now()
    url = copy_of(server, template)  # the app's schema, every migration applied by open_database
    rows = generate_rows(users, turns)
    generated = now()
    if server.fsync:
        set_fsync(server, False)  # the load is set-up, not measured; a checkpoint puts it on disk after
    with psycopg.connect(url, autocommit=True) as connection:
        # The schema's own CREATE INDEX statements (not those behind PRIMARY KEY / UNIQUE constraints),
        # dropped for the load and run again after it, so the indexes are exactly the app's.
        indexes = connection.execute(
            """SELECT indexname, indexdef FROM pg_indexes i WHERE schemaname = current_schema()
               AND tablename = ANY(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""",
            (list(COLUMNS),),
        ).fetchall()
        with connection.transaction():
            # Rows are consistent by construction: skip the per-row foreign key triggers.
            connection.execute("SET LOCAL session_replication_role = replica")
            for name, _ in indexes:
                connection.execute(f'DROP INDEX "{name}"')
            for table in ("users", "interactions", "holds", "ledger_entries", "error_events"):
                with connection.cursor().copy(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN") as copy:
                    for row in rows["tables"][table]:
                        copy.write_row(row)
            for _, sql in indexes:
                connection.execute(sql)
            connection.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT MAX(id) FROM users))")
        loaded = now()
        connection.execute("VACUUM ANALYZE")
        vacuumed = now()
        if server.fsync:
            set_fsync(server, True)
            connection.execute("CHECKPOINT")
        database_bytes = connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    tables = rows["tables"]
    return url, {
        "users": users,
        "interactions": turns,
        "holds": len(tables["holds"]),
        "ledger_entries": len(tables["ledger_entries"]),
        "error_events": len(tables["error_events"]),
        "last_day": rows["last_day"],
        "database_bytes": database_bytes,
        "generate_rows_s": round(generated - started, 2),
        "copy_and_indexes_s": round(loaded - generated, 2),
        "vacuum_analyze_s": round(vacuumed - loaded, 2),
        "checkpoint_s": round(now() - vacuumed, 2),
        "weights": rows["weights"],
        "user_ids": rows["user_ids"],
    }


# --- the history page ---------------------------------------------------------------------------------

# What list_history sends (store/history_queries.py; checked against Peewee's log below).
RAW_HISTORY_COUNT = "SELECT COUNT(*) FROM interactions WHERE user_id = %s"
RAW_HISTORY_PAGE = (
    "SELECT created_at, model_name, tier, credits_charged, status, prompt, answer, request_id, source "
    "FROM interactions WHERE user_id = %s ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s"
)


def raw_history(cursor, user_id: int, page: int, page_size: int) -> list[tuple]:
    """The history page as plain psycopg: the count, the page bounds, the page's rows."""
    cursor.execute(RAW_HISTORY_COUNT, (user_id,))
    (total,) = cursor.fetchone()
    page = min(page, max(1, -(-total // page_size)))
    cursor.execute(RAW_HISTORY_PAGE, (user_id, page_size, (page - 1) * page_size))
    return cursor.fetchall()


def _pages(dataset: dict, counts: dict, calls: int, page_size: int, seed: int) -> list[tuple[int, int]]:
    """The queries section's mix of history calls: active users, mostly page 1, some last and random pages."""
    rng = random.Random(seed)
    pages = []
    for user, page in _history_sample(rng, dataset, calls):
        last = max(1, -(-counts.get(user, 0) // page_size))
        pages.append((user, last if page == "last" else (rng.randint(1, last) if page == "random" else 1)))
    return pages


def _history_clients(url: str, side: str, calls: list[tuple[int, int]], clients: int, page_size: int) -> dict:
    """`calls` shared out over `clients` threads; pages/s and each call's latency."""
    from gemma_chat.store.db import database
    from gemma_chat.chats.history import list_history

    shares = [calls[i::clients] for i in range(clients)]
    times: list[list[float]] = [[] for _ in range(clients)]

    def work(index: int) -> None:
        if side == "ours":
            try:
                for user, page in shares[index]:
                    began = now()
                    list_history(user, page, page_size)
                    times[index].append(now() - began)
            finally:
                database.close()  # this thread's connection
        else:
            with raw_connection(url) as connection:
                cursor = connection.cursor()
                for user, page in shares[index]:
                    began = now()
                    raw_history(cursor, user, page, page_size)
                    times[index].append(now() - began)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    began = now()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = now() - began
    every = [t for share in times for t in share]
    return {"clients": clients, "pages_per_s": round(len(every) / elapsed, 1), **summary_ms(every)}


def app_connection_history(user_id: int, page: int, page_size: int) -> list[tuple]:
    """raw_history's statements through the app's own connection (gemma_chat.store.db.database): all of
    ours but Peewee building the queries, to tell that cost from the connection's."""
    from gemma_chat.store.db import database

    (total,) = database.execute_sql(RAW_HISTORY_COUNT, (user_id,)).fetchone()
    page = min(page, max(1, -(-total // page_size)))
    return database.execute_sql(RAW_HISTORY_PAGE, (user_id, page_size, (page - 1) * page_size)).fetchall()


def measure_history(url: str, dataset: dict, options: Options, page_size: int) -> dict:
    from gemma_chat.store.db import database
    from gemma_chat.chats.history import list_history

    counts = dict(database.execute_sql("SELECT user_id, COUNT(*) FROM interactions GROUP BY user_id").fetchall())
    heaviest = max(counts, key=counts.get)
    sent = [_one_line(sql) for sql, _ in capture_statements(lambda: list_history(heaviest, 1, page_size))]
    same = sent == [_one_line(RAW_HISTORY_COUNT), _one_line(RAW_HISTORY_PAGE)]
    calls = 200 if options.quick else 1000

    # One client: the three sides take turns call by call (who goes first rotates), same calls.
    times = {"ours": [], "app_connection": [], "raw": []}
    with raw_connection(url) as connection:
        cursor = connection.cursor()
        sides = {
            "ours": lambda user, page: list_history(user, page, page_size),
            "app_connection": lambda user, page: app_connection_history(user, page, page_size),
            "raw": lambda user, page: raw_history(cursor, user, page, page_size),
        }
        order = list(sides)
        for index, (user, page) in enumerate(_pages(dataset, counts, calls, page_size, seed=7)):
            for side in order[index % 3:] + order[:index % 3]:
                began = now()
                sides[side](user, page)
                times[side].append(now() - began)
        deep = (max(1, -(-counts[heaviest] // page_size)) // 2) * page_size
        plan = explain(cursor, RAW_HISTORY_PAGE, (heaviest, page_size, deep))
    one = {side: summary_ms(values) for side, values in times.items()}
    # Speed, ours as a fraction of raw's, at the median: on a shared machine the means follow the outliers.
    one["ratio"] = ratio(one["raw"]["p50_ms"], one["ours"]["p50_ms"])
    one["app_connection_ratio"] = ratio(one["raw"]["p50_ms"], one["app_connection"]["p50_ms"])

    # Eight clients: each side on its own, in turn (twice in a full run; the better run of each).
    many_calls = _pages(dataset, counts, calls * 2, page_size, seed=11)
    many = {"ours": [], "raw": []}
    for round_ in range(1 if options.quick else 2):
        for side in ("raw", "ours") if round_ % 2 == 0 else ("ours", "raw"):
            many[side].append(_history_clients(url, side, many_calls, 8, page_size))
    eight = {side: max(runs, key=lambda r: r["pages_per_s"]) for side, runs in many.items()}
    eight["runs"] = many
    eight["ratio"] = ratio(eight["ours"]["pages_per_s"], eight["raw"]["pages_per_s"])
    return {"page_size": page_size, "same_statements": same, "statements_ours": sent, "heaviest_user_turns": counts[heaviest],
            "one_client": one, "eight_clients": eight, "deep_page_plan_heaviest_user": plan}


# --- the admin report ---------------------------------------------------------------------------------

REPORT_PARTS = ("requests_by_model", "credits_by_user", "requests_by_source", "requests_per_day",
                "recent_errors", "model_performance", "active_users_by_day")


def explain(cursor, sql: str, params) -> dict:
    """EXPLAIN (ANALYZE, BUFFERS) in brief: times, JIT, and one line per plan node."""
    cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
    document = cursor.fetchone()[0][0]
    lines, seq_scans = [], []

    def walk(node, depth):
        what = node["Node Type"]
        if node.get("Relation Name"):
            what += f" on {node['Relation Name']}"
            if node["Node Type"] == "Seq Scan":
                seq_scans.append(node["Relation Name"])
        if node.get("Index Name"):
            what += f" using {node['Index Name']}"
        if node.get("Workers Launched"):
            what += f" ({node['Workers Launched']} workers)"
        lines.append(f"{'  ' * depth}{what}: {node.get('Actual Total Time', 0):.1f} ms, "
                     f"{node.get('Actual Rows', 0):,} rows x {node.get('Actual Loops', 1)}"
                     + (f", heap fetches {node['Heap Fetches']:,}" if "Heap Fetches" in node else "")
                     + (f", sort {node['Sort Method']} ({node.get('Sort Space Type')} {node.get('Sort Space Used')} kB)"
                        if "Sort Method" in node else ""))
        for child in node.get("Plans", []):
            walk(child, depth + 1)

    walk(document["Plan"], 0)
    jit = document.get("JIT", {}).get("Timing", {}).get("Total")
    return {
        "execution_ms": round(document["Execution Time"], 2),
        "planning_ms": round(document["Planning Time"], 2),
        "jit_ms": round(jit, 2) if jit is not None else None,
        "shared_read_blocks": document["Plan"].get("Shared Read Blocks"),
        "seq_scans": seq_scans,
        "nodes": lines,
    }


def measure_report(url: str, since, until, options: Options) -> dict:
    from gemma_chat.ops.reports import Reports

    report = Reports.for_range(since, until)
    repeats = 1 if options.quick else 3
    parts = {}
    with raw_connection(url) as connection:
        cursor = connection.cursor()
        for part in REPORT_PARTS:
            # Reads only: the roll-up is up to date, and EXPLAIN ANALYZE of a write would run it.
            statements = [(sql, params) for sql, params in capture_statements(getattr(report, part))
                          if sql.lstrip().upper().startswith(("SELECT", "WITH"))]
            ours, raw = [], []
            for _ in range(repeats):
                began = now()
                rows = getattr(report, part)()
                ours.append(now() - began)
                began = now()
                for sql, params in statements:
                    cursor.execute(sql, params)
                    cursor.fetchall()
                raw.append(now() - began)
            parts[part] = {
                "ours_ms": ms(statistics.median(ours)),
                "raw_fetch_ms": ms(statistics.median(raw)),
                "rows_out": len(rows),
                "explain": [explain(cursor, sql, params) for sql, params in statements],
            }
    totals = []
    for _ in range(repeats):
        began = now()
        report.full()
        totals.append(now() - began)
    ranked = sorted(parts, key=lambda p: -parts[p]["ours_ms"])
    return {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "total_ms": ms(statistics.median(totals)),
        "raw_fetch_total_ms": round(sum(p["raw_fetch_ms"] for p in parts.values()), 2),
        "server_execution_total_ms": round(sum(e["execution_ms"] for p in parts.values() for e in p["explain"]), 2),
        "slowest_parts": ranked[:3],
        "parts": parts,
    }


# --- the section ----------------------------------------------------------------------------------------


def measure_postgres(options: Options) -> dict:
    from gemma_chat.config import load_settings
    from gemma_chat.store.db import close_database, open_database

    from tests.postgres import PG_BIN, PostgresServer, postgres_available

    if not postgres_available():
        return {"skipped": f"PostgreSQL 15 is not installed at {PG_BIN}"}
    # In the system temp dir, as the tests' server: the postgres user must reach it (a bench
    # work dir is private to whoever runs the bench).
    root = Path(tempfile.mkdtemp(prefix="gemma-chat-bench-pg-"))
    # fsync on: a commit waits for the disk, as on a real server. The quick run (the test suite's)
    # checks the plumbing, and this machine's disk is slow: fsync off there.
    server = PostgresServer(root, fsync=not options.quick)
    phases = {}
    began = now()
    options.say(f"  starting PostgreSQL (fsync {'on' if server.fsync else 'off'})…")
    server.start()
    server_cpu = ServerCpu(server.data)
    try:
        facts = server_facts(server.url("postgres"))
        template = schema_template(server)
        phases["server_and_schema"] = round(now() - began, 2)
        ledger = measure_ledger(server, template, options)
        phases["ledger"] = round(now() - began - sum(phases.values()), 2)
        users, turns = QUICK_SCALE if options.quick else FULL_SCALE
        options.say(f"  loading {users:,} users and {turns:,} turns…")
        url, dataset = load_dataset(server, template, users, turns)
        phases["load"] = round(now() - began - sum(phases.values()), 2)
        options.say(f"  loaded: rows {dataset['generate_rows_s']} s, COPY and indexes {dataset['copy_and_indexes_s']} s, "
                    f"VACUUM ANALYZE {dataset['vacuum_analyze_s']} s ({dataset['database_bytes'] / 1e6:,.0f} MB)")
        settings = load_settings(env={})
        open_database(url, migrate=False)
        try:
            options.say("  history pages…")
            history = measure_history(url, dataset, options, settings.history_page_size)
            phases["history"] = round(now() - began - sum(phases.values()), 2)
            last_day = dt.date.fromisoformat(dataset["last_day"])
            # The first report after an upgrade sums every settled day into the roll-up (store/rollup.py):
            # timed apart, as bench/queries.py does; the reports below read what it wrote.
            from gemma_chat.store import rollup

            options.say("  the roll-up's first fill…")
            fill_began = now()
            rollup.bring_up_to_date()
            reports = {"rollup_first_fill_ms": ms(now() - fill_began)}
            for label, (since, until) in {"all_time": (None, None),
                                          "one_week": (last_day - dt.timedelta(days=6), last_day)}.items():
                options.say(f"  admin report, {label.replace('_', ' ')}…")
                reports[label] = measure_report(url, since, until, options)
            phases["report"] = round(now() - began - sum(phases.values()), 2)
        finally:
            close_database()
        cpu_s = server_cpu.seconds()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    dataset = {k: v for k, v in dataset.items() if k not in ("weights", "user_ids")}
    return {"server": facts, "phases_s": phases, "server_cpu_s": cpu_s, "ledger": ledger, "dataset": dataset,
            "history": history, "report": reports}
