"""`python main.py db copy --to URL`: move the data dir's SQLite database into an empty PostgreSQL database.

Nothing is half-copied: every table goes over in one transaction on the target, and that
transaction commits only when the books match (rows per table, every balance and held amount, the
ledger summed per user and kind) and the target passes `verify`'s integrity and ledger checks. The
SQLite file is read, never changed beyond bringing its schema up to date (what any command does),
and no app may run on the data dir meanwhile: it holds `data_dir/app.lock`, and so does the copy.
"""

from __future__ import annotations

import contextlib
import fcntl
from dataclasses import dataclass
from typing import Iterator

from ..config import Settings
from ..errors import DatabaseRefusedError, GemmaChatError
from ..billing.ledger import verify_ledger
from ..store import copy as store_copy
from ..store import db
from ..config import redact_url
from ..store.dialect import is_postgresql_url


@dataclass(frozen=True)
class Copied:
    source: str
    target: str  # the URL without its password
    rows: dict[str, int]  # rows copied per table
    active_holds: int

    @property
    def summary(self) -> str:
        counts = ", ".join(
            _count(self.rows.get(table, 0), one, many)
            for table, one, many in [("users", "account", "accounts"), ("ledger_entries", "ledger entry", "ledger entries"),
                                     ("interactions", "interaction", "interactions")]
        )
        line = f"Copied {self.source} to {self.target}: {counts}; the books match and verify is clean."
        if self.active_holds:
            holds = _count(self.active_holds, "active hold", "active holds")
            line += f" Still open: {holds}; the app's next start releases such holds uncharged."
        return line


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


@contextlib.contextmanager
def app_stopped(settings: Settings) -> Iterator[None]:
    """Hold the data dir's app lock (the one `python main.py` takes) for the whole copy: a running
    app could charge a turn the copy has already passed, and one starting mid-copy must wait."""
    with open(settings.data_dir / "app.lock", "a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise GemmaChatError(
                f"gemma-chat is running on {settings.data_dir} (it holds app.lock): stop it, then copy, "
                "so that no answer is charged in the SQLite database after its rows have been copied."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def copy_to_postgresql(settings: Settings, url: str) -> Copied:
    """Copy the data dir's SQLite database into the empty PostgreSQL database at `url`."""
    if not is_postgresql_url(url):
        raise GemmaChatError("--to must be a PostgreSQL URL: postgresql://user[:password]@host[:port]/database.")
    source = settings.db_path
    if not source.is_file():
        raise GemmaChatError(f"There is no SQLite database at {source} to copy.")
    with app_stopped(settings):
        source_migrations = _check_source(settings)
        _open_target(settings, url)
        try:
            if db.applied_migrations() != source_migrations:
                raise GemmaChatError(
                    f"{redact_url(url)} has a different schema version from {source}; it was made by another "
                    "version of gemma-chat. Copy into a new, empty database."
                )
            rows, active_holds = _copy_rows(settings, url)
        finally:
            db.close_database()
    return Copied(str(source), redact_url(url), rows, active_holds)


def _check_source(settings: Settings) -> list[str]:
    """Bring the SQLite schema up to date (as any command does) and refuse to copy broken books."""
    db.open_database(settings.db_path, busy_timeout_ms=settings.busy_timeout_ms)
    try:
        problems = db.check_integrity() + verify_ledger()
        if problems:
            raise GemmaChatError(
                f"{settings.db_path} fails verify ({len(problems)} problem(s), the first: {problems[0]}); "
                "run `python main.py verify` and put it right before copying."
            )
        return db.applied_migrations()
    finally:
        db.close_database()


def _open_target(settings: Settings, url: str) -> None:
    """Connect and migrate the target: a blank database gets the whole schema (one line on failure)."""
    try:
        store_copy.open_target(url, busy_timeout_ms=settings.busy_timeout_ms)
    except DatabaseRefusedError as exc:
        raise GemmaChatError(
            f"Cannot create the schema in {redact_url(url)}: {exc}. Copy into a new, empty database (createdb)."
        ) from None


def _copy_rows(settings: Settings, url: str) -> tuple[dict[str, int], int]:
    tables = store_copy.target_tables()
    with store_copy.read_source(settings.db_path, timeout_s=settings.busy_timeout_ms / 1000) as reader:
        store_copy.check_same_schema(reader, tables)
        with db.transaction():
            filled = store_copy.tables_with_rows(tables)
            if filled:
                raise GemmaChatError(
                    f"{redact_url(url)} is not empty ({', '.join(sorted(filled))} already have rows); "
                    "db copy only fills a new, empty database, so nothing was copied."
                )
            rows = {}
            for table in tables:
                try:
                    rows[table] = store_copy.copy_table(reader, table)
                except DatabaseRefusedError as exc:
                    raise GemmaChatError(f"Copying {table} failed: {exc}. Nothing was copied.") from None
            store_copy.move_identities_past_copied_ids()
            # Checked before COMMIT: a mismatch rolls everything back and leaves the target empty.
            mismatched = store_copy.mismatched_books(reader, tables)
            if mismatched:
                raise GemmaChatError(f"After the copy the books differ ({'; '.join(mismatched)}). Nothing was copied.")
            problems = db.check_integrity() + verify_ledger()
            if problems:
                raise GemmaChatError(
                    f"The copy fails verify ({len(problems)} problem(s), the first: {problems[0]}). Nothing was copied."
                )
            active_holds = store_copy.hand_open_holds_to_a_gone_instance()
    return rows, active_holds
