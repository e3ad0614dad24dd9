"""Opening a data directory: the file log, the database and its schema, and crash recovery."""

from __future__ import annotations

from dataclasses import dataclass

from . import interactions, ledger
from .config import Settings
from .db import open_database, transaction
from .error_log import configure_file_log, logger


@dataclass(frozen=True)
class Recovery:
    released_holds: int
    interrupted_turns: int


def open_data_dir(settings: Settings):
    """For every command: the log file and an up-to-date database."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    configure_file_log(settings.log_path)
    return open_database(settings.database_target, busy_timeout_ms=settings.busy_timeout_ms)


def recover_after_crash(settings: Settings, *, all_holds: bool) -> Recovery:
    """Release holds no generation can own any more and mark their turns interrupted.

    `all_holds` is for the app's start-up, when no generation on this data dir can be running;
    otherwise only holds older than the stale age are touched.
    """
    older_than = None if all_holds else settings.stale_hold_s
    with transaction():
        holds = ledger.release_stale_holds(older_than_s=older_than, reason="released at start-up (crash recovery)")
        interrupted = interactions.mark_interrupted([hold.request_id for hold in holds])
    if holds:
        logger.warning("released %d stale holds; %d turns marked interrupted", len(holds), interrupted)
    return Recovery(released_holds=len(holds), interrupted_turns=interrupted)
