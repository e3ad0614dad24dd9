"""What truly differs between SQLite and PostgreSQL, in one place.

Everything else is written once. Statements use `?` placeholders on both engines (PostgreSQL's
connection rewrites them, quoted text left alone); timestamps are ISO-8601 UTC text and flags are
0/1 integers on both, so every comparison, sort, day expression and index reads the same.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import zlib
from typing import Iterator
from urllib.parse import urlsplit

import peewee as pw

from ..config import redact_url
from ..errors import DatabaseDisconnectedError

# A `?` outside quotes is a placeholder; psycopg reads every % (quoted or not) as one.
_QMARK_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?")


def qmark_to_format(sql: str) -> str:
    """The app's `?` placeholders as psycopg's `%s`, a literal % doubled, a quoted ? kept."""

    def swap(match: re.Match) -> str:
        token = match.group(0)
        return "%s" if token == "?" else token

    return _QMARK_TOKENS.sub(swap, sql.replace("%", "%%"))


def is_postgresql_url(target) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception under Peewee's wrappers (each keeps what it wrapped as `orig`; a
    failed connect inside a BEGIN is wrapped twice)."""
    while isinstance(getattr(exc, "orig", None), BaseException):
        exc = exc.orig
    return exc


class _SqliteDatabase(pw.SqliteDatabase):
    def rollback(self):
        """After SQLITE_FULL or an I/O error SQLite may have rolled the whole transaction back itself;
        a ROLLBACK then fails ("no transaction is active") and would hide the error that matters."""
        connection = self._state.conn
        if connection is not None and not connection.in_transaction:
            return
        super().rollback()


class SqliteDialect:
    name = "sqlite"

    def create_database(self, path, *, busy_timeout_ms: int) -> pw.Database:
        # lock_type IMMEDIATE makes every top-level transaction take the write lock at BEGIN, so a
        # check-then-write inside it can never race another writer.
        return _SqliteDatabase(
            str(path),
            lock_type="IMMEDIATE",
            timeout=busy_timeout_ms / 1000,
            pragmas={
                "journal_mode": "wal",
                "synchronous": "full",  # a committed charge or top-up survives power loss
                "foreign_keys": 1,
                "busy_timeout": busy_timeout_ms,
            },
        )

    def is_busy_error(self, exc: BaseException) -> bool:
        return isinstance(exc, pw.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))

    # SQLITE_FULL, and SQLITE_IOERR_WRITE / _FSYNC / _SHMSIZE: what a write to a full disk can be
    # reported as (a WAL append is SQLITE_FULL; growing the -shm file or syncing it is an I/O error).
    _FULL_CODES = {"SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC", "SQLITE_IOERR_SHMSIZE"}

    def is_full_error(self, exc: BaseException) -> bool:
        error = driver_error(exc)
        return getattr(error, "sqlite_errorname", None) in self._FULL_CODES or "database or disk is full" in str(exc)

    def is_disconnect_error(self, exc: BaseException) -> bool:
        return False  # a file: there is no connection to lose

    @contextlib.contextmanager
    def exclusive(self, database: pw.Database, name: str) -> Iterator[None]:
        """Run alone among every process on this database (inside a transaction).

        SQLite's IMMEDIATE transactions already have a single writer: nothing to add.
        """
        yield

    def driver_sql(self, sql: str) -> str:
        return sql  # sqlite3 takes `?` as it is

    def read_snapshot(self, database: pw.Database):
        # A deferred transaction in WAL mode reads one snapshot from its first read on.
        return database.atomic("DEFERRED")

    def integrity_problems(self, database: pw.Database) -> list[str]:
        problems = []
        result = [row[0] for row in database.execute_sql("PRAGMA integrity_check")]
        if result != ["ok"]:
            problems.extend(f"integrity: {line}" for line in result)
        for table, rowid, parent, _ in database.execute_sql("PRAGMA foreign_key_check"):
            problems.append(f"foreign key: {table} row {rowid} points at a missing {parent} row")
        return problems

    def describe(self, target) -> str:
        return str(target)

    def connection_failure(self, exc: BaseException, target) -> str:
        return str(exc)


def _register_sqlite_compatible_dumpers(connection) -> None:
    """Datetimes as the ISO text SQLite stores (str(datetime)), booleans as 0/1, numeric sums as int
    or float: the same values on both engines."""
    from psycopg.adapt import Dumper, Loader
    from psycopg.postgres import types

    text_oid, int_oid = types["text"].oid, types["int4"].oid

    class NumericAsSqliteLoader(Loader):
        """SUM of a bigint and a division come back as numeric: an int or a float, as from SQLite."""

        def load(self, data):
            text = bytes(data).decode()
            return float(text) if any(c in text for c in ".eEN") else int(text)

    class IsoTextDumper(Dumper):
        oid = text_oid

        def dump(self, obj):
            return str(obj).encode()

    class BoolAsIntDumper(Dumper):
        oid = int_oid

        def dump(self, obj):
            return b"1" if obj else b"0"

    for kind in (dt.datetime, dt.date, dt.time):
        connection.adapters.register_dumper(kind, IsoTextDumper)
    connection.adapters.register_dumper(bool, BoolAsIntDumper)
    connection.adapters.register_loader("numeric", NumericAsSqliteLoader)


class _PostgresqlDatabase(pw.PostgresqlDatabase):
    """Peewee's PostgreSQL database that takes the app's `?` statements and SQLite-shaped values.

    A connection the server dropped (a restart, a failover, an idle timeout) is opened again, once,
    on the next statement or BEGIN outside a transaction. Inside one nothing is retried half-way:
    the transaction fails with DatabaseDisconnectedError and the caller may run it again whole.
    (Peewee's ReconnectMixin matches message fragments; psycopg 3's wording for a dead socket varies
    with where it noticed, so the SQLSTATE-based test of PostgresqlDialect decides here.)
    """

    def __init__(self, *args, lock_timeout_ms: int, **kwargs):
        self._lock_timeout_ms = lock_timeout_ms
        super().__init__(*args, **kwargs)

    def _connect(self):
        connection = super()._connect()
        _register_sqlite_compatible_dumpers(connection)
        # A row or lock held by someone else past this is the same "busy, try again" as SQLite's.
        connection.execute(f"SET lock_timeout = {int(self._lock_timeout_ms)}")
        # The app's queries are short and indexed: JIT compiling one cost more than running it
        # (bench postgres: 68 ms of an 821 ms report part).
        connection.execute("SET jit = off")
        return connection

    def execute_sql(self, sql, params=None, *args, **kwargs):
        if "?" in sql or "%s" not in sql:  # the app's statements; Peewee's own queries come with %s
            sql = qmark_to_format(sql)
        return self._reconnecting(super().execute_sql, sql, params, *args, **kwargs)

    def begin(self, *args, **kwargs):
        return self._reconnecting(super().begin, *args, **kwargs)

    def _reconnecting(self, run, *args, **kwargs):
        try:
            return run(*args, **kwargs)
        except (pw.OperationalError, pw.InterfaceError) as exc:
            if not _is_disconnect(exc):
                raise
            if self.in_transaction():
                raise DatabaseDisconnectedError() from exc
        if not self.is_closed():
            self.close()  # this thread's dead connection; `run` opens a new one (autoconnect)
        try:
            return run(*args, **kwargs)
        except (pw.OperationalError, pw.InterfaceError) as exc:
            if _is_disconnect(exc):  # the server is still away: reads and writes alike get the typed error
                raise DatabaseDisconnectedError() from exc
            raise

    def rollback(self):
        """A connection the server dropped has no transaction left to roll back (the server ended it):
        close it, so that the transaction's own error is the one raised and the next statement reconnects."""
        connection = self._state.conn
        if connection is not None and connection.closed:
            self.close()
            return
        super().rollback()


class PostgresqlDialect:
    name = "postgresql"

    # SQLSTATEs that mean "someone else had it; nothing was written": lock_not_available,
    # serialization_failure, deadlock_detected, query_canceled (lock_timeout reports it so).
    _BUSY_STATES = {"55P03", "40001", "40P01", "57014"}

    def create_database(self, url: str, *, busy_timeout_ms: int) -> pw.Database:
        # One connection per thread, opened on first use and kept (Peewee's thread-local
        # connections): the threads are the app's bounded worker pool, so the connections are too.
        return _PostgresqlDatabase(url, lock_timeout_ms=busy_timeout_ms, autoconnect=True)

    # disk_full; and the server going away: admin_shutdown (a fast restart), crash_shutdown,
    # cannot_connect_now (starting up or shutting down), and the connection_exception class (08…).
    _FULL_STATES = {"53100"}
    _GONE_STATES = {"57P01", "57P02", "57P03"}

    def is_busy_error(self, exc: BaseException) -> bool:
        cause = exc.__cause__ or exc.__context__ or exc
        return getattr(cause, "sqlstate", None) in self._BUSY_STATES or getattr(exc, "sqlstate", None) in self._BUSY_STATES

    def is_full_error(self, exc: BaseException) -> bool:
        return getattr(driver_error(exc), "sqlstate", None) in self._FULL_STATES

    def is_disconnect_error(self, exc: BaseException) -> bool:
        """The server went away or cannot be reached: psycopg's own connection errors carry no
        SQLSTATE ("server closed the connection unexpectedly", "the connection is closed",
        "connection failed: …"); the server's last word on a restart does."""
        import psycopg

        error = driver_error(exc)
        if not isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
            return False
        state = getattr(error, "sqlstate", None)
        return state is None or state.startswith("08") or state in self._GONE_STATES

    @contextlib.contextmanager
    def exclusive(self, database: pw.Database, name: str) -> Iterator[None]:
        """Run alone among every process on this database: a transaction-level advisory lock,
        released by the commit or rollback of the caller's transaction."""
        database.execute_sql("SELECT pg_advisory_xact_lock(?)", (advisory_key(name),))
        yield

    def driver_sql(self, sql: str) -> str:
        """A statement for psycopg itself (a cursor's executemany, which Peewee does not rewrite)."""
        return qmark_to_format(sql)

    def read_snapshot(self, database: pw.Database):
        # READ COMMITTED gives each statement its own snapshot; REPEATABLE READ one for them all.
        return database.atomic(isolation_level="REPEATABLE READ")

    def integrity_problems(self, database: pw.Database) -> list[str]:
        # PostgreSQL checks pages and foreign keys as it writes; what it can still lose is a
        # foreign key turned off by hand (session_replication_role) or a constraint not validated.
        problems = []
        for table, constraint in database.execute_sql(
            """SELECT conrelid::regclass::text, conname FROM pg_constraint
               WHERE connamespace = current_schema()::regnamespace AND NOT convalidated"""
        ):
            problems.append(f"constraint: {constraint} on {table} is not validated")
        for table, trigger in database.execute_sql(
            """SELECT tgrelid::regclass::text, tgname FROM pg_trigger
               WHERE NOT tgisinternal AND tgenabled = 'D'"""
        ):
            problems.append(f"trigger: {trigger} on {table} is disabled")
        return problems

    def describe(self, target) -> str:
        return redact_url(str(target))

    def connection_failure(self, exc: BaseException, target) -> str:
        """libpq's reason, first line only ("connection refused", "database "x" does not exist"),
        never the password even if a server or driver were to echo it."""
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        for prefix in ("connection failed: ", "connection is bad: "):  # psycopg's wrapping, not the reason
            reason = reason.removeprefix(prefix)
        password = urlsplit(str(target)).password
        return reason.replace(password, "***") if password else reason


def advisory_key(name: str) -> int:
    """A stable 31-bit key for a named advisory lock (the same in every process)."""
    return zlib.crc32(f"gemma-chat:{name}".encode()) & 0x7FFFFFFF


def dialect_for(target) -> SqliteDialect | PostgresqlDialect:
    return PostgresqlDialect() if is_postgresql_url(target) else SqliteDialect()


def _is_disconnect(exc: BaseException) -> bool:
    return PostgresqlDialect().is_disconnect_error(exc)
