"""Accounts: registration, login with per-client lock-out, password hashing, and one's own password.

Changes to another account (roles, disabling, unlocking, a new password) are admin.py's alone: it
re-checks the actor, keeps an administrator, and records each change in admin_actions.

A lock-out belongs to a (username, client) pair: wrong passwords from one client lock that client
out of that account, so a stranger who knows the admin's name cannot lock the admin out. Every
check that can refuse a sign-in runs before bcrypt, so a refused attempt costs no hashing.
"""

from __future__ import annotations

import datetime as dt
import functools
import re

import bcrypt

from ..billing import ledger
from . import sessions
from ..config import Settings
from ..store import account_queries
from ..store.db import User, transaction, utcnow
from ..errors import (
    AccountDisabledError,
    AccountLockedError,
    LoginError,
    ThrottledError,
    UnknownUserError,
    UsernameTakenError,
    ValidationError,
)

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{3,32}")
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_BYTES = 72  # bcrypt ignores everything past 72 bytes: refuse rather than truncate
WRONG_CREDENTIALS = "Wrong username or password."


def validate_username(username) -> str:
    if not isinstance(username, str):
        raise ValidationError("Enter a username.")
    username = username.strip()
    if not username:
        raise ValidationError("Enter a username.")
    if not USERNAME_PATTERN.fullmatch(username):
        raise ValidationError(
            "A username has 3 to 32 characters: letters A–Z, digits, and . _ - (no spaces)."
        )
    return username


def validate_password(password) -> str:
    if not isinstance(password, str) or not password:
        raise ValidationError("Enter a password.")
    if "\x00" in password:
        raise ValidationError("A password cannot contain a NUL character.")
    if len(password) < PASSWORD_MIN_CHARS:
        raise ValidationError("A password needs at least {n} characters.", n=PASSWORD_MIN_CHARS)
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, which a client can send in JSON as "\ud800"
        raise ValidationError("The password contains an invalid character.") from None
    if size > PASSWORD_MAX_BYTES:
        raise ValidationError(
            "A password can be at most {n} bytes in UTF-8 (72 plain letters, fewer with accents or emoji).",
            n=PASSWORD_MAX_BYTES,
        )
    return password


def hash_password(password: str, rounds: int) -> str:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def password_matches(password: str, password_hash: str) -> bool:
    encoded = password.encode("utf-8", "surrogatepass")
    if len(encoded) > PASSWORD_MAX_BYTES or b"\x00" in encoded:
        encoded = b"!"  # cannot match a stored hash; still spend the same bcrypt time
    return bcrypt.checkpw(encoded, password_hash.encode("ascii"))


@functools.lru_cache(maxsize=4)
def _decoy_hash(rounds: int) -> str:
    """Checked against for unknown usernames, so both failures take the same time."""
    return hash_password("decoy password, never matches", rounds)


def find_user(username: str) -> User | None:
    if not isinstance(username, str) or not username.strip().isascii():
        return None  # usernames are ASCII; other text (a lone surrogate, say) names nobody and cannot reach SQLite
    return account_queries.find_user_by_name(username.strip())


def get_user(user_id: int) -> User:
    user = account_queries.find_user_by_id(user_id)
    if user is None:
        raise UnknownUserError("No user with id {user_id}.", user_id=user_id)
    return user


def require_user(username: str) -> User:
    user = find_user(username)
    if user is None:
        raise UnknownUserError("No user named {username!r}.", username=str(username)[:40])  # a megabyte name is not echoed back
    return user


def register_user(settings: Settings, username, password, *, admin: bool = False) -> User:
    """Create an account with its starting balance, in one transaction. The first account is an admin."""
    username = validate_username(username)
    password_hash = hash_password(validate_password(password), settings.bcrypt_rounds)  # slow: outside the write lock
    with transaction():
        user_id = create_account(settings, username, password_hash, admin=admin)
    return get_user(user_id)


def create_account(settings: Settings, username: str, password_hash: str, *, admin: bool = False) -> int:
    """The account row and its starting balance, for a validated name and a hashed password.

    Runs in the caller's transaction (admin.py records who made it in the same one).
    """
    with transaction(), account_queries.first_admin_lock():  # two first sign-ups at once: one admin
        first = not account_queries.any_user_exists()
        user_id = account_queries.insert_user(username, password_hash, is_admin=admin or first)
        if user_id is None:
            raise UsernameTakenError("The username {username!r} is taken; choose another.", username=username)
        ledger.credit_signup(user_id, settings.starting_balance)
    return user_id


LOCAL_CLIENT = "local"  # the client of a sign-in that does not come over the network (tests, CLI)
# Clients that never signed in as an account wait between attempts once this many times
# lockout_attempts failures for it pile up within lockout_window_s, across all clients: a guesser
# spread over many addresses is slowed down, the owner on a known client is not.
SPREAD_ATTACK_FACTOR = 4
MAX_SPREAD_DELAY_S = 300
MAX_LOCK_S = 24 * 3600


def username_key(username) -> str | None:
    """The name a throttle is kept under; None for text that cannot be a username."""
    if not isinstance(username, str):
        return None
    key = username.strip().lower()
    return key if USERNAME_PATTERN.fullmatch(key) else None


def login(settings: Settings, username, password, *, client: str = LOCAL_CLIENT, now: dt.datetime | None = None) -> User:
    """Check the credentials; lock this client out of this account after too many failures in a row."""
    now = now or utcnow()
    key = username_key(username)
    if key is not None:
        check_throttle(settings, key, client, now)  # before bcrypt: a refused attempt costs nothing
    user = find_user(username) if isinstance(username, str) and username.strip() else None
    password = password if isinstance(password, str) else ""
    if user is None:
        password_matches(password, _decoy_hash(settings.bcrypt_rounds))
        _fail(settings, key, client, now)  # unknown names lock out too: a lock-out reveals no account
        raise LoginError(WRONG_CREDENTIALS)
    if not password_matches(password, user.password_hash):
        _fail(settings, key, client, now)
        raise LoginError(WRONG_CREDENTIALS)
    if user.is_disabled:
        raise AccountDisabledError("This account is disabled. Ask an administrator to enable it.")
    with transaction():  # a database locked past the busy timeout becomes DatabaseBusyError: "try again"
        account_queries.update_last_login(user.id, now)
        account_queries.record_sign_in_success(key, client, now)
    return get_user(user.id)


def check_throttle(settings: Settings, key: str, client: str, now: dt.datetime) -> None:
    """Refuse, before any bcrypt, a client locked out of this account or guessing in a crowd."""
    own = account_queries.find_throttle(key, client)
    if own is not None and own.locked_until is not None and own.locked_until > now:
        raise _locked_out(own.locked_until, now)
    if own is not None and own.last_success_at is not None:
        return  # a client that has signed in as this account before is never slowed by others' failures
    window_start = now - dt.timedelta(seconds=settings.lockout_window_s)
    # A lock-out counts as the failures that tripped it.
    failures, last = account_queries.count_recent_failures(key, window_start, per_lock=settings.lockout_attempts)
    excess = failures - settings.lockout_attempts * SPREAD_ATTACK_FACTOR
    if excess >= 0 and last is not None:
        delay = min(MAX_SPREAD_DELAY_S, 2 ** min(excess, 20))
        wait = delay - (now - last).total_seconds()
        if wait > 0:
            raise ThrottledError(
                "Too many failed sign-ins for this account; try again in {seconds} s.",
                retry_after=int(wait) + 1, seconds=int(wait) + 1,
            )


def _fail(settings: Settings, key: str | None, client: str, now: dt.datetime) -> None:
    """Count a failed login of this client in the current window; lock it out when it trips."""
    if key is None:
        return  # not a possible username: nothing to protect, and nothing of it is stored
    window_start = now - dt.timedelta(seconds=settings.lockout_window_s)
    with transaction():
        row = account_queries.claim_throttle(key, client, now)  # locked: two failures at once count twice
        if row.first_failed_at is None or row.first_failed_at < window_start:
            failures, first = 1, now
        else:
            failures, first = row.failures + 1, row.first_failed_at
        if failures >= settings.lockout_attempts:
            locks = row.locks + 1
            until = now + dt.timedelta(seconds=min(MAX_LOCK_S, settings.lockout_duration_s * 2 ** min(locks - 1, 16)))
            account_queries.lock_out_client(key, client, locks, until, now)
        else:
            account_queries.update_throttle_failures(key, client, failures, first, now)
        # Throttles of long ago protect nothing: sweep them now and then, on a failure.
        account_queries.delete_stale_throttles(now - dt.timedelta(days=2))
    if failures >= settings.lockout_attempts:
        raise _locked_out(until, now)


def locked_clients(username: str, *, now: dt.datetime | None = None) -> list[tuple[str, dt.datetime]]:
    """The clients locked out of this account now, with the end of each lock-out."""
    now = now or utcnow()
    key = username_key(username)
    if key is None:
        return []
    return account_queries.list_locked_clients(key, now)


def _locked_out(until: dt.datetime, now: dt.datetime) -> AccountLockedError:
    minutes = max(1, -(-int((until - now).total_seconds()) // 60))
    return AccountLockedError(
        "Too many failed attempts. Try again at {time} UTC (in {minutes} {minutes:minute|minutes}).",
        retry_at=until, time=f"{until:%H:%M}", minutes=minutes,
    )


def change_own_password(settings: Settings, user_id: int, current, new, *, keep_session_id: int) -> int:
    """The Account tab: the current password proves it is the owner; other sessions end.

    Returns how many other sessions ended.
    """
    user = get_user(user_id)
    if not isinstance(current, str) or not current or not password_matches(current, user.password_hash):
        raise ValidationError("The current password is wrong.")
    new = validate_password(new)
    if new == current:
        raise ValidationError("The new password is the same as the current one.")
    password_hash = hash_password(new, settings.bcrypt_rounds)
    with transaction():
        account_queries.update_password_hash(user.id, password_hash)
        return sessions.revoke_other_sessions(user.id, keep_session_id)


def list_users() -> list[User]:
    return account_queries.list_users()
