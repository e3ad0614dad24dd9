"""SQLite's online backup: a database file copied at one instant, safe while the app writes to it.

The backup API copies the pages inside one read transaction, so the copy is the database at one
instant (a charge is in it with its hold, or neither is), while the app goes on writing to its WAL.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from ..errors import DatabaseRefusedError


def copy_sqlite_database(source: Path, target: Path) -> tuple[int, int]:
    """Copy the database at `source` into the new file `target`; returns the copy's (users, ledger entries).

    DatabaseRefusedError, with SQLite's reason, when the copy fails.
    """
    try:
        with closing(sqlite3.connect(str(source), timeout=30)) as reader, closing(sqlite3.connect(str(target))) as writer:
            reader.backup(writer)  # all pages in one step: one read transaction, one instant
            writer.execute("PRAGMA journal_mode = delete")  # one self-contained file, no -wal beside it
            users = writer.execute("SELECT COUNT(*) FROM users").fetchone()[0]
            entries = writer.execute("SELECT COUNT(*) FROM ledger_entries").fetchone()[0]
    except sqlite3.Error as exc:
        raise DatabaseRefusedError(str(exc)) from exc
    return users, entries
