"""The database: the connection (SQLite file or PostgreSQL server), the Peewee models, migrations, transactions.

The schema is written as SQL (store/schema.py) so that the database itself holds the line on money
(CHECK constraints, append-only triggers, one charge per request); the Peewee models mirror it for
queries. What differs between the engines lives in store/dialect.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Callable, Iterator

import peewee as pw

from ..errors import (
    DatabaseBusyError,
    DatabaseDisconnectedError,
    DatabaseFullError,
    DatabaseRetryableError,
    DatabaseUnavailableError,
)
from .dialect import PostgresqlDialect, SqliteDialect, dialect_for
from .schema import MIGRATIONS, Statement, statement_for

# Deferred: every process (app, CLI, test worker) calls open_database() with its own file or URL.
database = pw.DatabaseProxy()
_dialect: SqliteDialect | PostgresqlDialect = SqliteDialect()


def dialect() -> SqliteDialect | PostgresqlDialect:
    """The engine the shared database was last opened on."""
    return _dialect


def utcnow() -> dt.datetime:
    """Naive UTC: what the database stores (ISO text sorts by time)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class BaseModel(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class User(BaseModel):
    username = pw.TextField()
    password_hash = pw.TextField()
    is_admin = pw.BooleanField(default=False)
    is_disabled = pw.BooleanField(default=False)
    balance = pw.IntegerField(default=0)
    held = pw.IntegerField(default=0)  # sum of this user's active holds
    failed_logins = pw.IntegerField(default=0)
    first_failed_at = pw.DateTimeField(null=True)
    locked_until = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField(default=utcnow)
    last_login_at = pw.DateTimeField(null=True)
    default_system_prompt = pw.TextField(default="")  # new chats start with it (Account tab)

    class Meta:
        table_name = "users"

    @property
    def available(self) -> int:
        return self.balance - self.held


class Hold(BaseModel):
    request_id = pw.TextField(unique=True)
    user = pw.ForeignKeyField(User, backref="holds")
    amount = pw.IntegerField()
    status = pw.TextField(default="active")  # active | captured | released
    created_at = pw.DateTimeField(default=utcnow)
    settled_at = pw.DateTimeField(null=True)
    release_reason = pw.TextField(null=True)
    instance_id = pw.TextField(null=True)  # the app instance whose generation owns it (ops/instances.py)

    class Meta:
        table_name = "holds"


class LedgerEntry(BaseModel):
    user = pw.ForeignKeyField(User, backref="ledger_entries")
    amount = pw.IntegerField()
    kind = pw.TextField()  # signup | topup | grant | charge
    balance_after = pw.IntegerField()
    request_id = pw.TextField(null=True)
    note = pw.TextField(null=True)
    actor = pw.ForeignKeyField(User, null=True, backref="+")
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "ledger_entries"


class Conversation(BaseModel):
    """A chat: its turns are the interactions that name it (and an imported chat's imported_turns before
    them). Deleting hides it from its owner only."""

    user = pw.ForeignKeyField(User, backref="conversations")
    title = pw.TextField()
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)
    deleted_at = pw.DateTimeField(null=True)
    tier = pw.TextField(null=True)  # the model the chat last used or chose
    system_prompt = pw.TextField(default="")

    class Meta:
        table_name = "conversations"


class Interaction(BaseModel):
    request_id = pw.TextField(unique=True)
    user = pw.ForeignKeyField(User, backref="interactions")
    tier = pw.TextField()
    model_name = pw.TextField()
    prompt = pw.TextField()
    answer = pw.TextField(default="")
    status = pw.TextField()  # pending | ok | stopped | error | refused | interrupted
    credits_charged = pw.IntegerField(default=0)
    prompt_tokens = pw.IntegerField(null=True)
    completion_tokens = pw.IntegerField(null=True)
    ttft_ms = pw.IntegerField(null=True)
    duration_ms = pw.IntegerField(null=True)
    error_id = pw.TextField(null=True)
    created_at = pw.DateTimeField(default=utcnow)
    finished_at = pw.DateTimeField(null=True)
    conversation = pw.ForeignKeyField(Conversation, null=True, backref="interactions")
    replaces = pw.ForeignKeyField("self", null=True, backref="+")  # a regenerated or edited turn

    source = pw.TextField(default="ui")  # ui | api: where the turn came from

    class Meta:
        table_name = "interactions"


class ErrorEvent(BaseModel):
    error_id = pw.TextField(unique=True)
    location = pw.TextField()
    exception_type = pw.TextField()
    message = pw.TextField()
    traceback = pw.TextField()
    user = pw.ForeignKeyField(User, null=True, backref="+")
    request_id = pw.TextField(null=True)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "error_events"


class WebSession(BaseModel):
    """A signed-in browser: the cookie's token is kept only as its sha256 (accounts/sessions.py)."""

    token_hash = pw.TextField(unique=True)
    user = pw.ForeignKeyField(User, backref="sessions")
    created_at = pw.DateTimeField(default=utcnow)
    last_seen_at = pw.DateTimeField(default=utcnow)
    expires_at = pw.DateTimeField()  # the absolute end; idle expiry is last_seen_at + session_idle_s
    revoked_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "sessions"


class ApiKey(BaseModel):
    """A user's key for /v1 (accounts/keys.py): stored only as its sha256, shown once when made."""

    user = pw.ForeignKeyField(User, backref="api_keys")
    label = pw.TextField(default="")
    key_hash = pw.TextField(unique=True)
    prefix = pw.TextField()  # the first characters, to tell keys apart in a list
    created_at = pw.DateTimeField(default=utcnow)
    last_used_at = pw.DateTimeField(null=True)
    revoked_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "api_keys"


class IdempotentRequest(BaseModel):
    """An /v1 request sent with an Idempotency-Key: claimed before it runs, its response kept after."""

    user = pw.ForeignKeyField(User, backref="+")
    key = pw.TextField()
    body_hash = pw.TextField()
    request_id = pw.TextField(null=True)
    status_code = pw.IntegerField(null=True)  # null while the first request runs
    response = pw.TextField(null=True)  # the final response's JSON
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "idempotent_requests"
        primary_key = pw.CompositeKey("user", "key")


class LoginThrottle(BaseModel):
    """Failed sign-ins of one username from one client (accounts/auth.py): a lock-out that is not everyone's."""

    username_key = pw.TextField()  # the lowercased username, whether or not such an account exists
    client = pw.TextField()  # the client's IP address
    failures = pw.IntegerField(default=0)
    first_failed_at = pw.DateTimeField(null=True)
    locks = pw.IntegerField(default=0)  # lock-outs in a row: each one lasts twice as long
    locked_until = pw.DateTimeField(null=True)
    last_success_at = pw.DateTimeField(null=True)
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "login_throttles"
        primary_key = pw.CompositeKey("username_key", "client")


class AdminAction(BaseModel):
    """One administrator action on an account (accounts/admin.py): who, when, what, to whom. Append-only."""

    actor = pw.ForeignKeyField(User, null=True, backref="+")  # null: the command line
    actor_name = pw.TextField()  # the admin's username then, or "command line"
    action = pw.TextField()  # grant | disable | enable | promote | demote | unlock | reset_password | create_user
    target = pw.ForeignKeyField(User, null=True, backref="+")
    detail = pw.TextField(default="")
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "admin_actions"




def apply_migrations(migrations: list[tuple[str, list[Statement]]] = MIGRATIONS) -> list[str]:
    """Apply the migrations not yet recorded, each in one transaction with its record.

    Checked inside the write lock (SQLite) or an advisory lock (PostgreSQL): two processes
    starting together apply each migration once.
    """
    applied_now = []
    for name, statements in migrations:
        with database.atomic(), _dialect.exclusive(database, "migrations"):
            database.execute_sql(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            if database.execute_sql("SELECT 1 FROM schema_migrations WHERE name = ?", (name,)).fetchone():
                continue
            for statement in statements:
                sql = statement_for(statement, _dialect.name)
                if sql is not None:
                    database.execute_sql(sql)
            database.execute_sql(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (name, utcnow().isoformat(" "))
            )
        applied_now.append(name)
    return applied_now


def applied_migrations() -> list[str]:
    return [row[0] for row in database.execute_sql("SELECT name FROM schema_migrations ORDER BY name")]


def open_database(target: Path | str, *, busy_timeout_ms: int = 5000, migrate: bool = True) -> pw.Database:
    """Point the shared database at `target` and bring its schema up to date.

    `target` is a SQLite file (created if needed) or a `postgresql://` URL.
    """
    global _dialect
    close_database()
    _dialect = dialect_for(target)
    if _dialect.name == "sqlite":
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
    database.initialize(_dialect.create_database(target, busy_timeout_ms=busy_timeout_ms))
    try:
        database.connect(reuse_if_open=True)
    except pw.OperationalError as exc:
        reason = _dialect.connection_failure(exc, target)
        raise DatabaseUnavailableError(f"Cannot open the database {_dialect.describe(target)}: {reason}") from None
    if migrate:
        apply_migrations()
    return database


def close_database() -> None:
    if database.obj is not None and not database.is_closed():
        database.close()


def database_answers() -> bool:
    """One trivial query (/readyz). A connection the server dropped is closed, so the next check
    (and the next request) connects afresh once the server is back."""
    try:
        database.execute_sql("SELECT 1").fetchone()
        return True
    except (pw.DatabaseError, pw.InterfaceError, OSError, DatabaseRetryableError):  # the latter: PostgreSQL gone
        try:
            database.close()
        except (pw.DatabaseError, pw.InterfaceError, OSError):
            pass
        return False


def execute_many(sql: str, rows) -> None:
    """One statement (with the app's `?` placeholders) for each row, in one driver call."""
    cursor = database.cursor()
    try:
        with pw.__exception_wrapper__:  # the driver's errors as Peewee's, as execute_sql raises them
            cursor.executemany(_dialect.driver_sql(sql), rows)
    finally:
        cursor.close()


def is_busy_error(exc: BaseException) -> bool:
    return _dialect.is_busy_error(exc)


def retryable_error(exc: BaseException) -> DatabaseRetryableError | None:
    """The typed error for an engine failure that wrote nothing and can pass later, else None:
    locked past the busy timeout, a full disk, a lost or refused server connection."""
    if isinstance(exc, DatabaseRetryableError):
        return exc
    if not isinstance(exc, pw.PeeweeException):
        return None
    if _dialect.is_busy_error(exc):
        return DatabaseBusyError()
    if _dialect.is_full_error(exc):
        return DatabaseFullError()
    if _dialect.is_disconnect_error(exc):
        return DatabaseDisconnectedError()
    return None


@contextlib.contextmanager
def transaction() -> Iterator[None]:
    """A write transaction (BEGIN IMMEDIATE on SQLite at the top level, a savepoint when nested).

    A failure that can pass by itself becomes a DatabaseRetryableError after a full rollback, so
    nothing of the transaction is written: the database held locked past the busy timeout
    (DatabaseBusyError), a full disk (DatabaseFullError), a server restarted or gone
    (DatabaseDisconnectedError; the next transaction connects again).
    """
    try:
        with database.atomic():
            yield
    except pw.PeeweeException as exc:
        typed = retryable_error(exc)
        if typed is None:
            raise
        raise typed from exc


@contextlib.contextmanager
def joined_transaction() -> Iterator[None]:
    """The caller's transaction when there is one (no savepoint), else a new one.

    For the steps of a chat turn (hold, capture, release, finish) that the turn runs inside its own
    transaction and whose failures it never catches there: a savepoint would add two round trips per
    step on PostgreSQL (bench postgres: 40% of the app's own time per cycle) and roll back nothing
    the failed outer transaction does not.
    """
    if database.in_transaction():
        yield
    else:
        with transaction():
            yield


@contextlib.contextmanager
def read_snapshot() -> Iterator[None]:
    """A read transaction: every statement in it sees the database as its first read found it,
    whatever other connections commit meanwhile. Takes no lock; a savepoint when nested."""
    with _dialect.read_snapshot(database):
        yield


def in_transaction(function: Callable) -> Callable:
    """Decorator form of transaction()."""

    def wrapper(*args, **kwargs):
        with transaction():
            return function(*args, **kwargs)

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    wrapper.__wrapped__ = function
    return wrapper


def check_integrity() -> list[str]:
    """The engine's own checks (SQLite: pages and foreign keys). Empty when healthy."""
    return _dialect.integrity_problems(database)
