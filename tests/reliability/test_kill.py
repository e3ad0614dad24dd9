"""SIGKILL the running app mid-answer, mid-top-up and mid-registration, restart it, and audit the books.

The in-process ledger version of this is tests/test_crash.py; here the whole app dies — HTTP server,
queue, model and all — while real clients talk to it, and the next start-up must clean up.
"""

from __future__ import annotations

import itertools
import random
import threading
import time

import pytest

from e2e.conftest import RunningApp

from .conftest import FAULTS_HOOK, query, session, signed_up, snapshot, start_app, verify

pytestmark = pytest.mark.slow

RECOVERY_REASON = "released at start-up (crash recovery)"


def kill(app) -> None:
    app.process.kill()  # SIGKILL: no finally, no atexit, no flush
    app.process.wait(timeout=30)


def restart(app, directory, attempt: int) -> RunningApp:
    """The same data dir, a fresh process (and port): start-up runs its crash recovery."""
    return RunningApp(app.data_dir, directory / f"app-{attempt}.log", **FAULTS_HOOK)


def without(rows, column: int):
    return [row[:column] + row[column + 1:] for row in rows]


def test_sigkill_during_generation_ten_times_charges_nothing_and_keeps_every_row(tmp_path):
    rng = random.Random(20261125)
    app = start_app(tmp_path, **FAULTS_HOOK)
    try:
        for attempt in range(10):
            # Work committed before the kill: a new account and a top-up.
            client = signed_up(app, f"user{attempt}")
            assert client.top_up(attempt + 1).startswith(f"Added {attempt + 1} credit")
            tier = rng.choice(["mini", "pro"])
            started, finished = threading.Event(), {}

            def chat(client=client, tier=tier):
                try:
                    finished["reply"] = client.chat(tier, "[fault:slow] Tell me about the sea.", on_update=lambda _: started.set())
                except Exception as exc:  # noqa: BLE001 — the server died under us
                    finished["error"] = exc

            thread = threading.Thread(target=chat)
            thread.start()
            assert started.wait(30), "the turn never started"  # its hold is committed by now
            before = snapshot(app.data_dir)  # nothing more is written until the answer ends
            time.sleep(rng.uniform(0.0, 2.5))  # the slow answer takes at least 4 s
            kill(app)
            thread.join(30)
            assert "reply" not in finished or not finished["reply"].outcome.ok, "the answer finished before the kill"
            (request_id,) = [r for (r,) in query(app.data_dir, "SELECT request_id FROM interactions WHERE status = 'pending'")]

            app = restart(app, tmp_path, attempt)
            after = snapshot(app.data_dir)
            assert "released 1 holds uncharged" in app.log_path.read_text()

            # Every row written before the kill is intact; only the interrupted turn's hold and status moved.
            held = 6  # users.held
            assert without(after["users"], held) == without(before["users"], held)
            assert all(row[held] == 0 for row in after["users"])
            assert after["ledger_entries"] == before["ledger_entries"]  # no charge for the interrupted turn
            assert after["error_events"] == before["error_events"]
            changed = [row for row in after["holds"] if row not in before["holds"]]
            assert len(changed) == 1 and changed[0][1] == request_id
            assert (changed[0][4], changed[0][7]) == ("released", RECOVERY_REASON)
            turns = {row[1]: row for row in after["interactions"]}
            assert [row for row in after["interactions"] if row not in before["interactions"]] == [turns[request_id]]
            assert turns[request_id][7:9] == ("interrupted", 0)  # status, credits_charged
            assert verify(app.data_dir) == []
        # The restarted app still serves and charges normally.
        assert signed_up(app, "after").chat("mini", "What is the capital of France?").charged == 1
        assert verify(app.data_dir) == []
    finally:
        app.stop()


def test_sigkill_during_top_ups_and_registrations_leaves_each_whole_or_absent(tmp_path):
    rng = random.Random(7)
    app = start_app(tmp_path, **FAULTS_HOOK)
    payers = ["payer0", "payer1", "payer2"]
    amounts = {name: itertools.count(1) for name in payers}  # every top-up of a payer has its own amount
    attempted_topups, acked_topups = set(), set()
    attempted_names, acked_names = set(), set()
    try:
        for name in payers:
            signed_up(app, name)
        for attempt in range(5):
            clients = {name: session(app) for name in payers}
            for name, client in clients.items():
                assert client.login(name) == ""
            stop = threading.Event()

            def top_ups(name):
                client = clients[name]
                while not stop.is_set():
                    amount = next(amounts[name])
                    attempted_topups.add((name, amount))
                    try:
                        message = client.top_up(amount)
                    except Exception:  # noqa: BLE001 — killed
                        return
                    if message.startswith(f"Added {amount} credit"):
                        acked_topups.add((name, amount))

            def registrations(worker):
                for n in itertools.count():
                    if stop.is_set():
                        return
                    username = f"new{attempt}w{worker}n{n}"
                    attempted_names.add(username)
                    try:
                        message = session(app).register(username, f"password of {username}")
                    except Exception:  # noqa: BLE001 — killed
                        return
                    if message == "":
                        acked_names.add(username)

            threads = [threading.Thread(target=top_ups, args=(name,)) for name in payers]
            threads += [threading.Thread(target=registrations, args=(worker,)) for worker in range(2)]
            topups_before, names_before = len(acked_topups), len(acked_names)
            for thread in threads:
                thread.start()
            # Kill only once this round has done real work, however loaded the machine is, then at a random moment.
            deadline = time.monotonic() + 60
            while (len(acked_topups) - topups_before < 7 or len(acked_names) - names_before < 3) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.8))
            kill(app)
            stop.set()
            for thread in threads:
                thread.join(30)

            app = restart(app, tmp_path, attempt)
            assert verify(app.data_dir) == []  # each balance = the sum of its entries, to the last one
            for name in payers:
                entries = [a for (a,) in query(
                    app.data_dir,
                    "SELECT e.amount FROM ledger_entries e JOIN users u ON u.id = e.user_id WHERE u.username = ? AND kind = 'topup'",
                    (name,),
                )]
                assert len(entries) == len(set(entries)), "a top-up was applied twice"
                present = {(name, a) for a in entries}
                assert {t for t in acked_topups if t[0] == name} <= present <= attempted_topups
            users = dict(query(app.data_dir, "SELECT username, balance FROM users WHERE username LIKE 'new%'"))
            signups = dict(query(
                app.data_dir,
                "SELECT u.username, COUNT(*) FROM ledger_entries e JOIN users u ON u.id = e.user_id "
                "WHERE kind = 'signup' AND u.username LIKE 'new%' GROUP BY u.username",
            ))
            assert acked_names <= set(users) <= attempted_names
            assert all(balance == 10 and signups.get(name) == 1 for name, balance in users.items()), (users, signups)
            unacked = sorted(set(users) - acked_names)  # committed, but the kill came before the answer
            for username in unacked[:3] + sorted(acked_names)[-1:]:
                assert session(app).login(username, f"password of {username}") == ""
        assert len(acked_topups) > 30 and len(acked_names) > 10, (len(acked_topups), len(acked_names))
    finally:
        app.stop()
