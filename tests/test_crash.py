"""SIGKILL a process in the middle of ledger work, 20 times: nothing is lost, created or left held."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

from gemma_chat.accounts import auth
from gemma_chat.store import db
from gemma_chat.store.db import Interaction, LedgerEntry
from gemma_chat.ops.startup import recover_after_crash
from gemma_chat.ops.verify import verify_database
from tests.conftest import ROOT


def ledger_sum(user_id: int, kind: str) -> int:
    return sum(e.amount for e in LedgerEntry.select().where((LedgerEntry.user == user_id) & (LedgerEntry.kind == kind)))


def wait_for_a_new_line(journal, worker, timeout=60.0) -> None:
    lines_before = len(journal.read_text().splitlines()) if journal.exists() else 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) > lines_before:
            return
        time.sleep(0.01)
    raise AssertionError(f"the crash worker journaled nothing in {timeout:.0f} s (exit code {worker.poll()})")


@pytest.mark.slow
def test_sigkill_during_ledger_cycles_loses_and_creates_nothing(settings, database, tmp_path):
    user = auth.register_user(settings, "alice", "long enough pw")
    journal = tmp_path / "journal.txt"
    rng = random.Random(20261125)
    db.close_database()
    unacked_topups = unacked_charges = 0  # committed, but killed before the journal line
    for _ in range(20):
        worker = subprocess.Popen([sys.executable, "-m", "tests.crash_worker", str(settings.db_path), str(journal), str(user.id)], cwd=ROOT)
        # Kill somewhere in the cycles: once this worker has journaled its first one (Python's start-up
        # takes from 0.2 s to seconds on a busy machine), then after a random part of a second.
        wait_for_a_new_line(journal, worker)
        time.sleep(rng.uniform(0.0, 0.6))
        worker.send_signal(signal.SIGKILL)
        worker.wait()

        db.open_database(settings.db_path)
        recover_after_crash(settings, all_holds=True)
        assert verify_database(settings) == []
        acked = journal.read_text().splitlines()
        acked_topups = 2 * acked.count("topup 2")
        acked_charges = acked.count("charge 1")
        topups, charges = ledger_sum(user.id, "topup"), -ledger_sum(user.id, "charge")
        # Each kill can leave at most the one operation in flight committed but not journaled.
        assert topups - acked_topups - unacked_topups in (0, 2)
        assert charges - acked_charges - unacked_charges in (0, 1)
        unacked_topups, unacked_charges = topups - acked_topups, charges - acked_charges
        assert auth.get_user(user.id).balance == settings.starting_balance + topups - charges
        assert Interaction.select().where(Interaction.status == "pending").count() == 0
        charged_turns = Interaction.select().where(Interaction.credits_charged > 0).count()
        assert charged_turns == charges
        db.close_database()
    db.open_database(settings.db_path)
    assert len(acked) > 20, "the worker should have completed cycles between kills"
