"""Opening a data directory: the file log, the database and its schema, and crash recovery."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from ..billing import ledger
from ..chats import interactions
from . import instances
from ..config import Settings
from ..store import instance_queries
from ..store.db import open_database, transaction
from .error_log import configure_file_log, logger


@dataclass(frozen=True)
class Recovery:
    released_holds: int
    interrupted_turns: int


def open_data_dir(settings: Settings):
    """For every command: the log file and an up-to-date database."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    configure_file_log(settings.log_path, settings.log_format)
    return open_database(settings.database_target, busy_timeout_ms=settings.busy_timeout_ms)


def recover_after_crash(settings: Settings, *, all_holds: bool) -> Recovery:
    """Release holds no generation can own any more and mark their turns interrupted.

    `all_holds` is for the app's start-up. On SQLite no other app runs on this data dir then (the
    file lock), so every active hold is orphaned. On PostgreSQL other instances may be serving the
    same database: only the holds of instances that are gone are released, and holds without an
    owner (made outside the app) once they are stale. Without `all_holds`, only stale holds.
    """
    reason = "released at start-up (crash recovery)"
    with transaction():
        if not all_holds:
            holds = ledger.release_stale_holds(older_than_s=settings.stale_hold_s, reason=reason)
        elif not instance_queries.other_instances_may_serve():
            holds = ledger.release_stale_holds(reason=reason)
        else:
            holds = _release_holds_of_gone_instances(settings, reason)
        interrupted = interactions.mark_interrupted([hold.request_id for hold in holds])
    if holds:
        logger.warning("released %d stale holds; %d turns marked interrupted", len(holds), interrupted)
    return Recovery(released_holds=len(holds), interrupted_turns=interrupted)


def _release_holds_of_gone_instances(settings: Settings, reason: str) -> list:
    gone = instances.gone_instances(instance_queries.list_hold_owners())
    released = ledger.release_holds_of(gone, reason=reason)
    return released + ledger.release_stale_holds(older_than_s=settings.stale_hold_s, reason=reason, unowned_only=True)


class OrphanSweeper:
    """On PostgreSQL, every `orphan_sweep_s`: release the holds of instances that died while this one runs."""

    def __init__(self, settings: Settings, *, log=print):
        self._settings = settings
        self._log = log
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orphan-sweeper", daemon=True)

    def start(self) -> "OrphanSweeper":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        interval = self._settings.orphan_sweep_s
        resume_at = 0.0
        while not self._stopping.wait(interval):
            try:
                if not instances.keep_liveness_lock():
                    # The server restarted: every instance lost its lock and takes it again at its
                    # next sweep. Sweeping before they have would release live instances' holds.
                    resume_at = time.monotonic() + 2 * interval
                if time.monotonic() < resume_at:
                    continue
                with transaction():
                    holds = _release_holds_of_gone_instances(self._settings, "released: its app instance is gone")
                    interactions.mark_interrupted([hold.request_id for hold in holds])
            except Exception as exc:  # noqa: BLE001 — a failed sweep is retried at the next interval
                logger.warning("the sweep for holds of stopped instances failed: %s", exc)
                continue
            if holds:
                self._log(f"Released {len(holds)} holds of a stopped app instance uncharged.")
