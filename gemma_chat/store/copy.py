"""The SQL half of `db copy`: a SQLite database's rows into an empty PostgreSQL database of the same schema.

Which tables, in foreign-key order (read from PostgreSQL's catalog, so a new migration's table is
copied without a change here); each table's rows with their ids through COPY; the identity
sequences moved past the copied ids; and the figures ("the books") that must read the same on both
sides. The target is the open database (db.database); the source, a SQLite file read at one
instant (read_source). gemma_chat/ops/transfer.py runs it inside one transaction on the target.
"""

from __future__ import annotations

import contextlib
import decimal
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Callable, Iterator

import peewee as pw

from ..errors import DatabaseRefusedError, GemmaChatError
from . import db

# Applied migrations are not data: the target records its own when it is migrated.
_NOT_COPIED = {"schema_migrations"}

Read = Callable[[str], list[tuple]]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def open_target(url: str, *, busy_timeout_ms: int) -> None:
    """Connect to and migrate the target: a blank database gets the whole schema. A schema it
    cannot create is a DatabaseRefusedError, with the connection closed again."""
    try:
        db.open_database(url, busy_timeout_ms=busy_timeout_ms)
    except (pw.ProgrammingError, pw.IntegrityError, pw.InternalError) as exc:
        db.close_database()
        raise DatabaseRefusedError(_first_line(exc)) from None


@contextlib.contextmanager
def read_source(path: Path, *, timeout_s: float) -> Iterator[sqlite3.Connection]:
    """The SQLite file in one read transaction, committed when the block ends without error: the
    copy and the comparison after it read the database at one instant."""
    # isolation_level=None: this code says when the read transaction starts.
    with closing(sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        yield reader
        reader.execute("COMMIT")


def target_tables() -> list[str]:
    """The PostgreSQL database's tables, each after every table its foreign keys point at."""
    tables = {
        name
        for (name,) in db.database.execute_sql("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        if name not in _NOT_COPIED
    }
    parents: dict[str, set[str]] = {table: set() for table in tables}
    for child, parent in db.database.execute_sql(
        """SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
           WHERE contype = 'f' AND connamespace = current_schema()::regnamespace"""
    ):
        if child in parents and parent != child:  # a row pointing at an earlier row of its own table: id order
            parents[child].add(parent)
    ordered: list[str] = []
    while parents:
        ready = sorted(table for table, needs in parents.items() if needs <= set(ordered))
        if not ready:
            raise GemmaChatError(f"The tables {', '.join(sorted(parents))} point at each other; cannot order the copy.")
        ordered.extend(ready)
        for table in ready:
            del parents[table]
    return ordered


def source_tables(reader: sqlite3.Connection) -> set[str]:
    return {
        name
        for (name,) in reader.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        if name not in _NOT_COPIED
    }


def _source_columns(reader: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in reader.execute(f'PRAGMA table_info("{table}")')]


def _target_columns(table: str) -> list[str]:
    return [
        name
        for (name,) in db.database.execute_sql(
            """SELECT column_name FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position""",
            (table,),
        )
    ]


def check_same_schema(reader: sqlite3.Connection, tables: list[str]) -> None:
    """Both sides have the same tables and, in each, the same columns (by name)."""
    missing = set(tables) ^ source_tables(reader)
    if missing:
        raise GemmaChatError(
            f"The two schemas differ (tables {', '.join(sorted(missing))} are on one side only); "
            "run `python main.py db migrate` on both with the same version of gemma-chat."
        )
    for table in tables:
        if set(_source_columns(reader, table)) != set(_target_columns(table)):
            raise GemmaChatError(f"The two schemas differ in the columns of {table}; migrate both with the same version.")


def tables_with_rows(tables: list[str]) -> list[str]:
    return [table for table in tables if db.database.execute_sql(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone()]


def copy_table(reader: sqlite3.Connection, table: str) -> int:
    """Every row of `table`, ids included, in id order (a turn that replaces another comes after it).
    A row either side refuses is a DatabaseRefusedError."""
    try:
        columns = _target_columns(table)
        names = ", ".join(f'"{column}"' for column in columns)
        order = " ORDER BY id" if "id" in columns else ""
        rows = 0
        with db.database.cursor() as cursor, cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
            for row in reader.execute(f'SELECT {names} FROM "{table}"{order}'):
                copy.write_row(row)
                rows += 1
        return rows
    except (pw.DatabaseError, sqlite3.Error) as exc:
        raise DatabaseRefusedError(_first_line(exc)) from None


# No app instance ever runs under this id, so its liveness lock is never held: the first instance
# to start on the copy releases these holds, as it does a crashed instance's (ops/instances.py).
COPIED_HOLDS_OWNER = "copied-from-sqlite"


def hand_open_holds_to_a_gone_instance() -> int:
    """Holds still active in the copied SQLite file belong to no running app (the copy needs it
    stopped): stamp them as a gone instance's, so they are released uncharged at the next start."""
    return db.database.execute_sql(
        "UPDATE holds SET instance_id = ? WHERE status = 'active' AND instance_id IS NULL RETURNING id",
        (COPIED_HOLDS_OWNER,),
    ).rowcount


def move_identities_past_copied_ids() -> None:
    """The next id PostgreSQL hands out is past every copied one (COPY with explicit ids leaves the
    sequences at their start, and the first new account would collide with account 1)."""
    identities = db.database.execute_sql(
        """SELECT table_name, column_name FROM information_schema.columns
           WHERE table_schema = current_schema() AND is_identity = 'YES'"""
    ).fetchall()
    for table, column in identities:
        db.database.execute_sql(
            f"""SELECT setval(pg_get_serial_sequence(?, ?), COALESCE((SELECT MAX("{column}") FROM "{table}"), 0) + 1, false)""",
            (table, column),
        )


def books(read: Read, tables: list[str]) -> dict[str, list[tuple]]:
    """What must read the same after the copy: rows per table, every account's balance and held
    credits, the ledger and the holds summed per user and kind, the turns per status and charge.

    The same SQL on both engines; rows are sorted here, since the engines' text orders may differ.
    """
    figures = {f"rows in {table}": read(f'SELECT COUNT(*) FROM "{table}"') for table in tables}
    figures.update(
        {
            "accounts (id, balance, held)": read("SELECT id, balance, held FROM users"),
            "ledger (user, kind, entries, sum)": read(
                "SELECT user_id, kind, COUNT(*), SUM(amount) FROM ledger_entries GROUP BY user_id, kind"
            ),
            "ledger (last id, sum)": read("SELECT MAX(id), COALESCE(SUM(amount), 0) FROM ledger_entries"),
            "holds (user, status, holds, sum)": read(
                "SELECT user_id, status, COUNT(*), SUM(amount) FROM holds GROUP BY user_id, status"
            ),
            "interactions (status, turns, credits)": read(
                "SELECT status, COUNT(*), SUM(credits_charged) FROM interactions GROUP BY status"
            ),
        }
    )
    # COUNT and SUM come back as Decimal from PostgreSQL for some types: compare numbers as ints.
    return {name: sorted(tuple(_plain(value) for value in row) for row in rows) for name, rows in figures.items()}


def _plain(value):
    return int(value) if isinstance(value, decimal.Decimal) else value


def differences(source: dict[str, list[tuple]], target: dict[str, list[tuple]]) -> list[str]:
    return [name for name in source if source[name] != target.get(name)]


def mismatched_books(reader: sqlite3.Connection, tables: list[str]) -> list[str]:
    """The figures of books() that read differently in the source and the target."""
    source = books(lambda sql: reader.execute(sql).fetchall(), tables)
    target = books(lambda sql: db.database.execute_sql(sql).fetchall(), tables)
    return differences(source, target)
