"""Ledger throughput: hold + capture cycles (with the interaction row) against raw sqlite3.

One cycle is what a chat turn writes: a transaction that holds the price and logs the turn as
pending, then a transaction that captures the hold as a charge and finishes the turn. Our side
calls the app's own functions (ledger.hold_credits, interactions.start_interaction,
ledger.capture_hold, interactions.finish_interaction, as turn.run_turn does); the raw side sends
the same writes through sqlite3 with the same pragmas (WAL, synchronous=FULL, busy_timeout,
foreign keys, BEGIN IMMEDIATE). Each worker has its own user; afterwards `verify_ledger()` and an
exact count of credits check that nothing was lost or doubled.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from .common import Options, ratio

PRICE = 1
START_BALANCE = 10_000_000
PROMPT = "What is the capital of France?"
ANSWER = "Paris is the capital of France."
BUSY_TIMEOUT_MS = 5000


def _timestamp() -> str:
    from gemma_chat.store.db import utcnow

    return str(utcnow())  # how peewee stores a DateTimeField


def prepare_database(path: Path, workers: int) -> list[int]:
    """A fresh database with the app's schema and one funded user per worker."""
    from gemma_chat.accounts import auth
    from gemma_chat.billing import ledger
    from gemma_chat.store.db import close_database, open_database
    from gemma_chat.config import load_settings

    settings = load_settings(env={}, bcrypt_rounds=4, starting_balance=0)
    open_database(path, busy_timeout_ms=BUSY_TIMEOUT_MS)
    try:
        users = []
        for index in range(workers):
            user = auth.register_user(settings, f"bench{index:02d}", "bench-password")
            ledger.grant_credits(user.id, START_BALANCE, actor_id=None, note="benchmark funds")
            users.append(user.id)
        return users
    finally:
        close_database()


# --- one worker's loop: ours and raw --------------------------------------------------------------


def ours_cycle(user_id: int) -> None:
    """One cycle through the app's functions, as turn.run_turn calls them."""
    from gemma_chat.billing import ledger
    from gemma_chat.chats import interactions
    from gemma_chat.store.db import transaction
    from gemma_chat.chats.interactions import TurnOutcome

    request_id = ledger.new_request_id()
    with transaction():
        ledger.hold_credits(user_id, PRICE, request_id)
        interactions.start_interaction(request_id, user_id, "mini", "bench", PROMPT)
    with transaction():
        settlement = ledger.capture_hold(request_id)
        outcome = TurnOutcome(
            status="ok", answer=ANSWER, credits_charged=settlement.amount,
            prompt_tokens=12, completion_tokens=8, ttft_ms=40, duration_ms=160,
        )
        interactions.finish_interaction(request_id, outcome)


def ours_cycles(user_id: int, deadline: float) -> tuple[int, int]:
    """Cycles through the app's functions until `deadline` (time.time()). Returns (cycles, errors)."""
    from gemma_chat.store.db import database

    cycles = errors = 0
    try:
        while time.time() < deadline:
            try:
                ours_cycle(user_id)
            except Exception:  # noqa: BLE001 — counted; verify afterwards shows whether money moved
                errors += 1
                continue
            cycles += 1
    finally:
        database.close()
    return cycles, errors


def raw_connection(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode = wal", "synchronous = full", "foreign_keys = 1", f"busy_timeout = {BUSY_TIMEOUT_MS}"):
        connection.execute(f"PRAGMA {pragma}")
    return connection


def raw_cycles(path: Path, user_id: int, deadline: float) -> tuple[int, int]:
    """The same writes as ours_cycles, as plain SQL on one sqlite3 connection."""
    connection = raw_connection(path)
    execute = connection.execute
    cycles = errors = 0
    try:
        while time.time() < deadline:
            request_id = uuid.uuid4().hex
            try:
                execute("BEGIN IMMEDIATE")
                try:
                    if execute(
                        "UPDATE users SET held = held + ? WHERE id = ? AND balance - held >= ?", (PRICE, user_id, PRICE)
                    ).rowcount != 1:
                        raise RuntimeError("insufficient credits")
                    created = _timestamp()
                    execute(
                        "INSERT INTO holds (request_id, user_id, amount, status, created_at) VALUES (?, ?, ?, 'active', ?)",
                        (request_id, user_id, PRICE, created),
                    )
                    execute(
                        "INSERT INTO interactions (request_id, user_id, tier, model_name, prompt, answer, status, "
                        "credits_charged, created_at) VALUES (?, ?, 'mini', 'bench', ?, '', 'pending', 0, ?)",
                        (request_id, user_id, PROMPT, created),
                    )
                    execute("COMMIT")
                except BaseException:
                    execute("ROLLBACK")
                    raise
                execute("BEGIN IMMEDIATE")
                try:
                    hold_id, hold_user, amount, status = execute(
                        "SELECT id, user_id, amount, status FROM holds WHERE request_id = ?", (request_id,)
                    ).fetchone()
                    settled = _timestamp()
                    execute("UPDATE holds SET status = 'captured', settled_at = ? WHERE id = ?", (settled, hold_id))
                    (balance,) = execute(
                        "UPDATE users SET balance = balance + ?, held = held - ? "
                        "WHERE id = ? AND balance + ? >= held - ? AND held - ? >= 0 RETURNING balance",
                        (-amount, amount, hold_user, -amount, amount, amount),
                    ).fetchone()
                    execute(
                        "INSERT INTO ledger_entries (user_id, amount, kind, balance_after, request_id, created_at) "
                        "VALUES (?, ?, 'charge', ?, ?, ?)",
                        (hold_user, -amount, balance, request_id, settled),
                    )
                    execute(
                        "UPDATE interactions SET status = 'ok', answer = ?, credits_charged = ?, prompt_tokens = 12, "
                        "completion_tokens = 8, ttft_ms = 40, duration_ms = 160, finished_at = ? "
                        "WHERE request_id = ? AND status = 'pending'",
                        (ANSWER, amount, settled, request_id),
                    )
                    execute("COMMIT")
                except BaseException:
                    execute("ROLLBACK")
                    raise
            except Exception:  # noqa: BLE001
                errors += 1
                continue
            cycles += 1
    finally:
        connection.close()
    return cycles, errors


def _process_worker(side: str, path: str, user_id: int, start_at: float, duration: float) -> tuple[int, int, float, float]:
    """In a spawned process: wait for the common start, then run one side's loop."""
    path = Path(path)
    if side == "ours":
        from gemma_chat.store.db import open_database

        open_database(path, busy_timeout_ms=BUSY_TIMEOUT_MS)
    time.sleep(max(0.0, start_at - time.time()))
    began = time.time()
    cycles, errors = ours_cycles(user_id, began + duration) if side == "ours" else raw_cycles(path, user_id, began + duration)
    return cycles, errors, began, time.time()


# --- one configuration ---------------------------------------------------------------------------


def run_config(side: str, mode: str, workers: int, duration: float, directory: Path) -> dict:
    path = directory / f"ledger-{side}-{mode}-{workers}.db"
    users = prepare_database(path, workers)
    if mode == "processes":
        context = multiprocessing.get_context("spawn")
        start_at = time.time() + 2.0  # after every process has started and imported
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(_process_worker, side, str(path), user, start_at, duration) for user in users]
            results = [f.result() for f in futures]
        cycles = [r[0] for r in results]
        errors = sum(r[1] for r in results)
        elapsed = max(r[3] for r in results) - min(r[2] for r in results)
    else:
        if side == "ours":
            from gemma_chat.store.db import open_database

            open_database(path, busy_timeout_ms=BUSY_TIMEOUT_MS)
        results: list[tuple[int, int]] = [(0, 0)] * workers
        began = time.time()
        deadline = began + duration

        def work(index: int) -> None:
            user = users[index]
            results[index] = ours_cycles(user, deadline) if side == "ours" else raw_cycles(path, user, deadline)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.time() - began
        cycles = [r[0] for r in results]
        errors = sum(r[1] for r in results)
    check = check_money(path, dict(zip(users, cycles)))
    return {
        "side": side,
        "mode": mode,
        "workers": workers,
        "cycles": sum(cycles),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "cycles_per_s": round(sum(cycles) / elapsed, 1) if elapsed else None,
        **check,
    }


def check_money(path: Path, cycles_by_user: dict[int, int]) -> dict:
    """verify_ledger() on the file, and every user's credits against the cycles their worker counted."""
    from gemma_chat.store.db import close_database, database, open_database
    from gemma_chat.billing.ledger import verify_ledger

    open_database(path, busy_timeout_ms=BUSY_TIMEOUT_MS)
    try:
        problems = verify_ledger()
        lost = doubled = 0
        for user_id, cycles in cycles_by_user.items():
            balance, held = database.execute_sql("SELECT balance, held FROM users WHERE id = ?", (user_id,)).fetchone()
            charges, charged = database.execute_sql(
                "SELECT COUNT(*), -COALESCE(SUM(amount), 0) FROM ledger_entries WHERE user_id = ? AND kind = 'charge'",
                (user_id,),
            ).fetchone()
            expected = cycles * PRICE
            difference = (START_BALANCE - balance) - expected  # > 0: charged more than the cycles counted
            doubled += max(0, difference) + max(0, charges - cycles)
            lost += max(0, -difference) + held
            if charged != expected:
                problems.append(f"user {user_id}: charged {charged}, expected {expected}")
        ok_turns = database.execute_sql("SELECT COUNT(*) FROM interactions WHERE status = 'ok'").fetchone()[0]
        if ok_turns != sum(cycles_by_user.values()):
            problems.append(f"{ok_turns} finished turns for {sum(cycles_by_user.values())} cycles")
    finally:
        close_database()
    return {"verify_problems": problems[:10], "verify_ok": not problems, "lost_credits": lost, "doubled_credits": doubled}


def measure_ledger(options: Options) -> dict:
    duration = 0.6 if options.quick else 4.0
    directory = options.work_dir / "ledger"
    directory.mkdir(parents=True, exist_ok=True)
    configs = [("threads", 1), ("threads", 8), ("processes", 4)]
    results = []
    for mode, workers in configs:
        for side in ("raw", "ours"):
            options.say(f"  {side:4s} {workers} {mode if workers > 1 else 'thread'}…")
            results.append(run_config(side, mode, workers, duration, directory))
    table = []
    for mode, workers in configs:
        raw = next(r for r in results if (r["side"], r["mode"], r["workers"]) == ("raw", mode, workers))
        ours = next(r for r in results if (r["side"], r["mode"], r["workers"]) == ("ours", mode, workers))
        table.append(
            {
                "config": f"{workers} {mode}" if workers > 1 else "1 thread",
                "raw_cycles_per_s": raw["cycles_per_s"],
                "ours_cycles_per_s": ours["cycles_per_s"],
                "ratio": ratio(ours["cycles_per_s"], raw["cycles_per_s"]),
                "verify_ok": raw["verify_ok"] and ours["verify_ok"],
                "lost_credits": raw["lost_credits"] + ours["lost_credits"],
                "doubled_credits": raw["doubled_credits"] + ours["doubled_credits"],
                "errors": raw["errors"] + ours["errors"],
            }
        )
    return {"seconds_per_run": duration, "price": PRICE, "runs": results, "table": table}
