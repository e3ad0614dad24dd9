"""`python main.py db backup FILE`: a consistent copy of the SQLite database, safe while the app runs.

The copy is the database at one instant (store/backup.py). It is written next to FILE under a
temporary name and renamed when complete: an interrupted backup never leaves a half file under the
name asked for. Holds that were active at that instant (answers being generated) are in the copy as
active; a restored database releases them uncharged at start-up, as after a crash.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatabaseRefusedError, GemmaChatError
from ..store.backup import copy_sqlite_database


@dataclass(frozen=True)
class Backup:
    path: Path
    size_bytes: int
    users: int
    ledger_entries: int


def backup_database(source: Path, target: Path) -> Backup:
    """Copy the database at `source` to `target` (which must not exist yet)."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise GemmaChatError(f"There is no database at {source} to back up.")
    if target.exists():
        raise GemmaChatError(f"{target} already exists; choose a new file name (a backup never overwrites).")
    if not target.parent.is_dir():
        raise GemmaChatError(f"The folder {target.parent} does not exist.")
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        users, entries = copy_sqlite_database(source, partial)
        os.link(partial, target)  # fails if `target` appeared meanwhile: never overwrite
    except DatabaseRefusedError as exc:
        raise GemmaChatError(f"The backup failed: {exc}.") from None
    except FileExistsError:
        raise GemmaChatError(f"{target} already exists; choose a new file name (a backup never overwrites).") from None
    except OSError as exc:
        raise GemmaChatError(f"Cannot write {target}: {exc.strerror or exc}.") from None
    finally:
        partial.unlink(missing_ok=True)
    return Backup(target, target.stat().st_size, users, entries)

