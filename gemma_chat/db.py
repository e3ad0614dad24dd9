"""The SQLite database: connection settings, the Peewee models and the migrations that create them.

This is the only module that knows the schema. The schema is written as SQL so that the database
itself holds the line on money (CHECK constraints, append-only triggers, one charge per request);
the Peewee models mirror it for queries.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Callable, Iterator

import peewee as pw

from .errors import DatabaseBusyError

# Deferred: every process (app, CLI, test worker) calls open_database() with its own path.
# lock_type IMMEDIATE makes every top-level transaction take the write lock at BEGIN, so a
# check-then-write inside it can never race another writer.
database = pw.SqliteDatabase(None, lock_type="IMMEDIATE")


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
    """A chat: its turns are the interactions that name it. Deleting hides it from its owner only."""

    user = pw.ForeignKeyField(User, backref="conversations")
    title = pw.TextField()
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)
    deleted_at = pw.DateTimeField(null=True)

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
    """A signed-in browser: the cookie's token is kept only as its sha256 (sessions.py)."""

    token_hash = pw.TextField(unique=True)
    user = pw.ForeignKeyField(User, backref="sessions")
    created_at = pw.DateTimeField(default=utcnow)
    last_seen_at = pw.DateTimeField(default=utcnow)
    expires_at = pw.DateTimeField()  # the absolute end; idle expiry is last_seen_at + session_idle_s
    revoked_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "sessions"


class ApiKey(BaseModel):
    """A user's key for /v1 (keys.py): stored only as its sha256, shown once when made."""

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
    """Failed sign-ins of one username from one client (auth.py): a lock-out that is not everyone's."""

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
    """One administrator action on an account (admin.py): who, when, what, to whom. Append-only."""

    actor = pw.ForeignKeyField(User, null=True, backref="+")  # null: the command line
    actor_name = pw.TextField()  # the admin's username then, or "command line"
    action = pw.TextField()  # grant | disable | enable | promote | demote | unlock | reset_password | create_user
    target = pw.ForeignKeyField(User, null=True, backref="+")
    detail = pw.TextField(default="")
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "admin_actions"


# --- migrations -----------------------------------------------------------------
# An ordered list of (name, statements). Never edit or reorder a shipped migration: add a new one.

_INITIAL = [
    """CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL CHECK (length(username) BETWEEN 3 AND 32),
        password_hash TEXT NOT NULL,
        is_admin INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
        is_disabled INTEGER NOT NULL DEFAULT 0 CHECK (is_disabled IN (0, 1)),
        balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
        held INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0 AND held <= balance),
        failed_logins INTEGER NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
        first_failed_at TEXT,
        locked_until TEXT,
        created_at TEXT NOT NULL,
        last_login_at TEXT
    )""",
    # Usernames are ASCII only, so NOCASE folds every letter they can hold.
    "CREATE UNIQUE INDEX users_username_nocase ON users (username COLLATE NOCASE)",
    """CREATE TABLE holds (
        id INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL UNIQUE,
        user_id INTEGER NOT NULL REFERENCES users (id),
        amount INTEGER NOT NULL CHECK (amount > 0),
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'captured', 'released')),
        created_at TEXT NOT NULL,
        settled_at TEXT,
        release_reason TEXT,
        CHECK ((status = 'active') = (settled_at IS NULL))
    )""",
    "CREATE INDEX holds_active ON holds (created_at) WHERE status = 'active'",
    "CREATE INDEX holds_by_user ON holds (user_id)",
    """CREATE TABLE ledger_entries (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id),
        amount INTEGER NOT NULL CHECK (amount <> 0),
        kind TEXT NOT NULL CHECK (kind IN ('signup', 'topup', 'grant', 'charge')),
        balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
        request_id TEXT,
        note TEXT,
        actor_id INTEGER REFERENCES users (id),
        created_at TEXT NOT NULL,
        CHECK (kind = 'grant' OR (kind = 'charge') = (amount < 0)),
        CHECK (kind <> 'charge' OR request_id IS NOT NULL)
    )""",
    # The database itself refuses a second charge for the same chat turn.
    "CREATE UNIQUE INDEX ledger_one_charge_per_request ON ledger_entries (request_id) WHERE kind = 'charge'",
    "CREATE INDEX ledger_by_user ON ledger_entries (user_id, id)",
    "CREATE INDEX ledger_by_time ON ledger_entries (created_at)",
    """CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
       BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END""",
    """CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
       BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END""",
    """CREATE TABLE interactions (
        id INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL UNIQUE,
        user_id INTEGER NOT NULL REFERENCES users (id),
        tier TEXT NOT NULL,
        model_name TEXT NOT NULL,
        prompt TEXT NOT NULL,
        answer TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL
            CHECK (status IN ('pending', 'ok', 'stopped', 'error', 'refused', 'interrupted')),
        credits_charged INTEGER NOT NULL DEFAULT 0 CHECK (credits_charged >= 0),
        prompt_tokens INTEGER CHECK (prompt_tokens >= 0),
        completion_tokens INTEGER CHECK (completion_tokens >= 0),
        ttft_ms INTEGER,
        duration_ms INTEGER,
        error_id TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        CHECK (credits_charged = 0 OR status IN ('ok', 'stopped'))
    )""",
    "CREATE INDEX interactions_by_user ON interactions (user_id, created_at, id)",
    "CREATE INDEX interactions_by_time ON interactions (created_at, model_name)",
    """CREATE TABLE error_events (
        id INTEGER PRIMARY KEY,
        error_id TEXT NOT NULL UNIQUE,
        location TEXT NOT NULL,
        exception_type TEXT NOT NULL,
        message TEXT NOT NULL,
        traceback TEXT NOT NULL,
        user_id INTEGER REFERENCES users (id),
        request_id TEXT,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX error_events_by_time ON error_events (created_at)",
]

# Measured by bench/queries.py on 10,000 users and 1,000,000 turns: the all-time admin report took
# 3.1 s and the ledger check in `verify` 4.9 s, mostly reading whole rows for a few columns.
_REPORT_INDEXES = [
    # requests_by_model: one pass in (model, status) order, without touching the rows.
    "CREATE INDEX interactions_by_model_status ON interactions (model_name, status, credits_charged, created_at)",
    # requests_per_day: grouped by day without sorting a million rows (the report's own expression).
    "CREATE INDEX interactions_by_day ON interactions (substr(created_at, 1, 10), model_name)",
    # credits_by_user, and verify's per-user sum of entries.
    "CREATE INDEX ledger_by_user_kind ON ledger_entries (user_id, kind, created_at, amount)",
    # verify's per-user sum of active holds: only the few active holds are in it.
    "CREATE INDEX holds_active_by_user ON holds (user_id, amount) WHERE status = 'active'",
]

# Issue 10: a sign-in is a server-side session bound to an HttpOnly cookie, and a lock-out is per
# (username, client) so that a stranger's wrong passwords cannot lock the owner out.
_SESSIONS = [
    """CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
        user_id INTEGER NOT NULL REFERENCES users (id),
        created_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked_at TEXT
    )""",
    "CREATE INDEX sessions_by_user ON sessions (user_id) WHERE revoked_at IS NULL",
    "CREATE INDEX sessions_by_expiry ON sessions (expires_at)",
    """CREATE TABLE login_throttles (
        username_key TEXT NOT NULL,
        client TEXT NOT NULL,
        failures INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
        first_failed_at TEXT,
        locks INTEGER NOT NULL DEFAULT 0 CHECK (locks >= 0),
        locked_until TEXT,
        last_success_at TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (username_key, client)
    )""",
    "CREATE INDEX login_throttles_by_time ON login_throttles (updated_at)",
]

# Issue 11: chats. Every interaction belongs to a conversation; the turns from before chats existed
# become one "Earlier chats" conversation per user (their order is kept; nothing is guessed about
# where one chat ended). A session remembers its open chat, so a reload shows it again. A turn
# that regenerates or edits an earlier one names it: the log keeps both, the chat shows the new one.
_CONVERSATIONS = [
    """CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id),
        title TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT
    )""",
    "CREATE INDEX conversations_by_user ON conversations (user_id, updated_at, id) WHERE deleted_at IS NULL",
    "ALTER TABLE interactions ADD COLUMN conversation_id INTEGER REFERENCES conversations (id)",
    "ALTER TABLE interactions ADD COLUMN replaces_id INTEGER REFERENCES interactions (id)",
    "CREATE INDEX interactions_by_conversation ON interactions (conversation_id, id)",
    """INSERT INTO conversations (user_id, title, created_at, updated_at)
       SELECT user_id, 'Earlier chats', MIN(created_at), MAX(created_at) FROM interactions GROUP BY user_id""",
    """UPDATE interactions SET conversation_id =
       (SELECT c.id FROM conversations c WHERE c.user_id = interactions.user_id)""",
    "ALTER TABLE sessions ADD COLUMN conversation_id INTEGER REFERENCES conversations (id)",
]

# Issue 13: the OpenAI-compatible /v1 API. Keys are stored hashed; a turn remembers where it came
# from; a retried request with the same Idempotency-Key finds the first one's response.
_API = [
    """CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id),
        label TEXT NOT NULL DEFAULT '' CHECK (length(label) <= 64),
        key_hash TEXT NOT NULL UNIQUE CHECK (length(key_hash) = 64),
        prefix TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
    )""",
    "CREATE INDEX api_keys_by_user ON api_keys (user_id)",
    "ALTER TABLE interactions ADD COLUMN source TEXT NOT NULL DEFAULT 'ui' CHECK (source IN ('ui', 'api'))",
    """CREATE TABLE idempotent_requests (
        user_id INTEGER NOT NULL REFERENCES users (id),
        key TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
        body_hash TEXT NOT NULL,
        request_id TEXT,
        status_code INTEGER,
        response TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (user_id, key)
    )""",
    "CREATE INDEX idempotent_requests_by_time ON idempotent_requests (created_at)",
]

# Issue 11 (points 6 and 7): the Admin tab's account actions, each recorded with who did it. Kept
# like the ledger: rows are only ever added. A password never reaches `detail`.
_ADMIN_ACTIONS = [
    """CREATE TABLE admin_actions (
        id INTEGER PRIMARY KEY,
        actor_id INTEGER REFERENCES users (id),
        actor_name TEXT NOT NULL,
        action TEXT NOT NULL CHECK (length(action) BETWEEN 1 AND 32),
        target_id INTEGER REFERENCES users (id),
        detail TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX admin_actions_by_time ON admin_actions (created_at)",
    "CREATE INDEX admin_actions_by_target ON admin_actions (target_id, id)",
    """CREATE TRIGGER admin_actions_no_update BEFORE UPDATE ON admin_actions
       BEGIN SELECT RAISE(ABORT, 'admin_actions is append-only'); END""",
    """CREATE TRIGGER admin_actions_no_delete BEFORE DELETE ON admin_actions
       BEGIN SELECT RAISE(ABORT, 'admin_actions is append-only'); END""",
]

# Measured by bench/queries.py at 1,000,000 turns: the all-time admin report took 11 s, every part
# of it a pass over a million rows, and model_performance sorted them all in Python.
_REPORT_PERFORMANCE = [
    # model_performance's medians and p95s over all time: the k-th value is k steps along one of
    # these, not a sort. Partial, so a turn enters them once, when it finishes (refused ones never).
    """CREATE INDEX interactions_ttft_by_model ON interactions (model_name, ttft_ms, status)
       WHERE status NOT IN ('refused', 'pending')""",
    """CREATE INDEX interactions_duration_by_model ON interactions (model_name, duration_ms, status)
       WHERE status NOT IN ('refused', 'pending')""",
    # The roll-up (rollup.py): each UTC day summed once nothing can change it any more. `through`
    # is the last day summed: the per-day rows hold every day up to it, and the per-user totals
    # everything up to it. Filled by the first report, so this migration reads no turns.
    "CREATE TABLE report_rollup (id INTEGER PRIMARY KEY CHECK (id = 1), through TEXT NOT NULL)",
    """CREATE TABLE report_day_counts (
        day TEXT NOT NULL,
        model_name TEXT NOT NULL,
        status TEXT NOT NULL,
        source TEXT NOT NULL,
        requests INTEGER NOT NULL,
        credits INTEGER NOT NULL,
        ttft_count INTEGER NOT NULL,
        duration_count INTEGER NOT NULL,
        timed_tokens INTEGER NOT NULL,
        timed_ms INTEGER NOT NULL,
        PRIMARY KEY (day, model_name, status, source)
    )""",
    "CREATE TABLE report_day_users (day TEXT PRIMARY KEY, active_users INTEGER NOT NULL)",
    """CREATE TABLE report_user_totals (
        user_id INTEGER PRIMARY KEY REFERENCES users (id),
        credits_spent INTEGER NOT NULL,
        credits_topped_up INTEGER NOT NULL,
        credits_granted INTEGER NOT NULL,
        requests INTEGER NOT NULL
    )""",
]

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("0001_initial", _INITIAL),
    ("0002_report_indexes", _REPORT_INDEXES),
    ("0003_sessions", _SESSIONS),
    ("0004_conversations", _CONVERSATIONS),
    ("0005_api", _API),
    ("0006_admin_actions", _ADMIN_ACTIONS),
    ("0007_report_performance", _REPORT_PERFORMANCE),
]


def apply_migrations(migrations: list[tuple[str, list[str]]] = MIGRATIONS) -> list[str]:
    """Apply the migrations not yet recorded, each in one transaction with its record."""
    database.execute_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    applied_now = []
    for name, statements in migrations:
        with database.atomic():
            # Checked inside the write lock: two processes starting together apply each once.
            if database.execute_sql("SELECT 1 FROM schema_migrations WHERE name = ?", (name,)).fetchone():
                continue
            for statement in statements:
                database.execute_sql(statement)
            database.execute_sql(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (name, utcnow().isoformat(" "))
            )
        applied_now.append(name)
    return applied_now


def applied_migrations() -> list[str]:
    return [row[0] for row in database.execute_sql("SELECT name FROM schema_migrations ORDER BY name")]


def open_database(path: Path, *, busy_timeout_ms: int = 5000) -> pw.SqliteDatabase:
    """Point the shared database at `path` (created if needed) and bring its schema up to date."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not database.is_closed():
        database.close()
    database.init(
        str(path),
        timeout=busy_timeout_ms / 1000,
        pragmas={
            "journal_mode": "wal",
            "synchronous": "full",  # a committed charge or top-up survives power loss
            "foreign_keys": 1,
            "busy_timeout": busy_timeout_ms,
        },
    )
    database.connect(reuse_if_open=True)
    apply_migrations()
    return database


def close_database() -> None:
    if not database.is_closed():
        database.close()


def is_busy_error(exc: BaseException) -> bool:
    return isinstance(exc, pw.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


@contextlib.contextmanager
def transaction() -> Iterator[None]:
    """A write transaction (BEGIN IMMEDIATE at the top level, a savepoint when nested).

    A database held locked by someone else past the busy timeout becomes DatabaseBusyError,
    after a full rollback: nothing of the transaction is written.
    """
    try:
        with database.atomic():
            yield
    except pw.OperationalError as exc:
        if is_busy_error(exc):
            raise DatabaseBusyError("The database is busy; nothing was changed. Please try again.") from exc
        raise


@contextlib.contextmanager
def read_snapshot() -> Iterator[None]:
    """A read transaction: every statement in it sees the database as its first read found it,
    whatever other connections commit meanwhile (WAL). Takes no lock; a savepoint when nested."""
    with database.atomic("DEFERRED"):
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
    """SQLite's own checks: page integrity and foreign keys. Empty when healthy."""
    problems = []
    result = [row[0] for row in database.execute_sql("PRAGMA integrity_check")]
    if result != ["ok"]:
        problems.extend(f"integrity: {line}" for line in result)
    for table, rowid, parent, _ in database.execute_sql("PRAGMA foreign_key_check"):
        problems.append(f"foreign key: {table} row {rowid} points at a missing {parent} row")
    return problems
