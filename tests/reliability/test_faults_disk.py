"""The disk under the data dir fills up, before a turn and in the middle of one: the real app on a
small tmpfs, filled and emptied by the test.

Filling is made exact: SQLite's WAL file keeps the space of earlier frames, so a full disk could
still take a small write into it. The test truncates the WAL first (a TRUNCATE checkpoint from its
own connection while the app is idle), so that the app's next commit needs new space and meets the
full disk. Needs root (mount); skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .conftest import FAULTS_HOOK, balance, query, scalar, signed_up, start_app, verify
from .gradio_http import BALANCE

pytestmark = pytest.mark.slow

DISK_SIZE = "32m"  # the database, the WAL and the error log of a few users, with room to spare
FULL_MESSAGE = "The server's disk is full; nothing was changed. Please try again later."
FULL_ANSWER_MESSAGE = "The server's disk is full, so this answer was not recorded. Nothing was charged; please try again later."


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of DISK_SIZE mounted for this test only, unmounted whatever happens."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0755", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], capture_output=True)


class Disk:
    def __init__(self, mount_point: Path, database: Path):
        self.mount_point = mount_point
        self.database = database
        self.filler = mount_point / "filler"

    def fill(self) -> None:
        """Truncate the WAL, then take every free byte of the file system."""
        with contextlib.closing(sqlite3.connect(self.database, timeout=30)) as connection:
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0 and os.path.getsize(f"{self.database}-wal") == 0
        descriptor = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (1 << 20, 4096, 1):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(descriptor, bytes(size))
        finally:
            os.close(descriptor)
        assert os.statvfs(self.mount_point).f_bavail == 0

    def free(self) -> None:
        self.filler.unlink()


def shown_balance(client) -> int:
    """The balance the signed-in page shows (its load event)."""
    shown = [BALANCE.search(value) for value in client.restore() if isinstance(value, str)]
    return int(next(match for match in shown if match).group(1))


def history_prompts(client) -> str:
    outcome = client.call("history", 1)
    assert outcome.ok, outcome.error
    return str(outcome.data)


def test_a_full_disk_fails_writes_cleanly_keeps_reads_and_recovers_when_space_returns(small_disk):
    app = start_app(small_disk / "app", **FAULTS_HOOK)
    disk = Disk(small_disk, app.data_dir / "gemma_chat.db")
    try:
        client = signed_up(app, "alice")
        assert client.chat("mini", "What is the capital of France?").charged == 1
        # The session is due to be touched on its next event: that write meets the full disk too.
        with contextlib.closing(sqlite3.connect(app.data_dir / "gemma_chat.db")) as connection, connection:
            connection.execute("UPDATE sessions SET last_seen_at = datetime(last_seen_at, '-5 minutes')")
        output_before = app.log_path.read_text()
        rows_before = scalar(app.data_dir, "SELECT count(*) FROM interactions")

        disk.fill()
        refused = client.chat("mini", "Tell me about the sea.")
        top_up = client.top_up(5)
        # Reads go on: the page with the balance, History.
        balance_shown = shown_balance(client)
        history = history_prompts(client)

        assert not refused.charged and FULL_MESSAGE in refused.text, refused.text  # said beside the box, no price line
        assert top_up == f"⚠ {FULL_MESSAGE}"
        assert balance_shown == 9 and "What is the capital of France?" in history
        assert balance(app.data_dir, "alice") == (9, 0)
        assert scalar(app.data_dir, "SELECT count(*) FROM interactions") == rows_before  # nothing half-written

        disk.free()  # the app recovers by itself: no restart
        assert client.chat("mini", "Tell me about the sea.").charged == 1
        assert "Added 5 credits" in client.top_up(5)
        assert balance(app.data_dir, "alice") == (13, 0)

        output = app.log_path.read_text()[len(output_before):]
        assert "Traceback" not in output and "Logging error" not in output, output
        assert app.process.poll() is None
        assert verify(app.data_dir) == []
    finally:
        app.stop()


def test_a_disk_that_fills_mid_answer_charges_nothing_and_releases_the_hold_when_space_returns(small_disk):
    app = start_app(small_disk / "app", **FAULTS_HOOK)
    disk = Disk(small_disk, app.data_dir / "gemma_chat.db")
    try:
        client = signed_up(app, "bob")
        output_before = app.log_path.read_text()
        held, finished = threading.Event(), {}
        turn = threading.Thread(target=lambda: finished.update(
            reply=client.chat("mini", "[fault:slow] Tell me about the sea.", on_update=lambda _: held.set())))
        turn.start()
        assert held.wait(60)  # the hold is written; the answer takes at least 4 s more
        assert balance(app.data_dir, "bob") == (10, 1)
        disk.fill()
        turn.join(60)
        assert not turn.is_alive(), "the turn hung on the full disk"

        reply = finished["reply"]
        assert reply.charged == 0 and FULL_ANSWER_MESSAGE in reply.text, reply.text
        assert "Traceback" not in reply.text
        assert balance(app.data_dir, "bob") == (10, 1)  # the release cannot be written yet...
        assert shown_balance(client) == 10  # ...and the page still reads

        disk.free()
        deadline = time.monotonic() + 30  # ...and is written once there is space, without a restart
        while balance(app.data_dir, "bob") != (10, 0) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert balance(app.data_dir, "bob") == (10, 0)
        (status, charged), = query(app.data_dir, "SELECT status, credits_charged FROM interactions")
        assert (status, charged) == ("error", 0)
        assert query(app.data_dir, "SELECT status, release_reason FROM holds") == [("released", "disk full")]
        assert client.chat("mini", "What is the capital of France?").charged == 1

        output = app.log_path.read_text()[len(output_before):]
        assert "Traceback" not in output and "Logging error" not in output, output
        # The error log could not write its file: it said so once, in one line.
        assert len(re.findall("cannot write the log file", output)) == 1, output
        assert verify(app.data_dir) == []
    finally:
        app.stop()
