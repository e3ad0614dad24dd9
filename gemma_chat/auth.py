"""Accounts: registration, login with lock-out, password hashing, and the admin's account actions."""

from __future__ import annotations

import datetime as dt
import functools
import re

import bcrypt
import peewee as pw

from . import ledger
from .config import Settings
from .db import User, database, transaction, utcnow
from .errors import (
    AccountDisabledError,
    AccountLockedError,
    LoginError,
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
        raise ValidationError(f"A password needs at least {PASSWORD_MIN_CHARS} characters.")
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, which a client can send in JSON as "\ud800"
        raise ValidationError("The password contains an invalid character.") from None
    if size > PASSWORD_MAX_BYTES:
        raise ValidationError(
            f"A password can be at most {PASSWORD_MAX_BYTES} bytes in UTF-8 "
            "(72 plain letters, fewer with accents or emoji)."
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
    return User.select().where(pw.fn.lower(User.username) == username.strip().lower()).first()


def get_user(user_id: int) -> User:
    user = User.get_or_none(User.id == user_id)
    if user is None:
        raise UnknownUserError(f"No user with id {user_id}.")
    return user


def require_user(username: str) -> User:
    user = find_user(username)
    if user is None:
        raise UnknownUserError(f"No user named {username!r}.")
    return user


def register_user(settings: Settings, username, password, *, admin: bool = False) -> User:
    """Create an account with its starting balance, in one transaction. The first account is an admin."""
    username = validate_username(username)
    password = validate_password(password)
    password_hash = hash_password(password, settings.bcrypt_rounds)  # slow: outside the write lock
    try:
        with transaction():
            first = not database.execute_sql("SELECT 1 FROM users LIMIT 1").fetchone()
            user = User.create(username=username, password_hash=password_hash, is_admin=admin or first)
            ledger.credit_signup(user.id, settings.starting_balance)
    except pw.IntegrityError as exc:
        if "username" in str(exc):
            raise UsernameTakenError(f"The username {username!r} is taken; choose another.") from None
        raise
    return get_user(user.id)


def login(settings: Settings, username, password, *, now: dt.datetime | None = None) -> User:
    """Check the credentials; lock the account after too many failures in a row."""
    now = now or utcnow()
    user = find_user(username) if isinstance(username, str) and username.strip() else None
    password = password if isinstance(password, str) else ""
    if user is None:
        password_matches(password, _decoy_hash(settings.bcrypt_rounds))
        raise LoginError(WRONG_CREDENTIALS)
    if user.locked_until is not None and user.locked_until > now:
        raise AccountLockedError(_locked_message(user.locked_until, now), user.locked_until)
    if not password_matches(password, user.password_hash):
        locked_until = _record_failure(settings, user.id, now)
        if locked_until is not None:
            raise AccountLockedError(_locked_message(locked_until, now), locked_until)
        raise LoginError(WRONG_CREDENTIALS)
    if user.is_disabled:
        raise AccountDisabledError("This account is disabled. Ask an administrator to enable it.")
    with transaction():  # a database locked past the busy timeout becomes DatabaseBusyError: "try again"
        User.update(failed_logins=0, first_failed_at=None, locked_until=None, last_login_at=now).where(
            User.id == user.id
        ).execute()
    return get_user(user.id)


def _record_failure(settings: Settings, user_id: int, now: dt.datetime) -> dt.datetime | None:
    """Count a failed login in the current window; return the lock-out end when it trips."""
    window_start = now - dt.timedelta(seconds=settings.lockout_window_s)
    with transaction():
        user = User.get_by_id(user_id)
        if user.first_failed_at is None or user.first_failed_at < window_start:
            failures, first = 1, now
        else:
            failures, first = user.failed_logins + 1, user.first_failed_at
        if failures >= settings.lockout_attempts:
            until = now + dt.timedelta(seconds=settings.lockout_duration_s)
            User.update(failed_logins=0, first_failed_at=None, locked_until=until).where(User.id == user_id).execute()
            return until
        User.update(failed_logins=failures, first_failed_at=first).where(User.id == user_id).execute()
        return None


def _locked_message(until: dt.datetime, now: dt.datetime) -> str:
    minutes = max(1, -(-int((until - now).total_seconds()) // 60))
    return (
        f"Too many failed attempts. Try again at {until:%H:%M} UTC "
        f"(in {minutes} minute{'s' if minutes != 1 else ''})."
    )


def change_password(settings: Settings, username: str, new_password) -> None:
    user = require_user(username)
    password_hash = hash_password(validate_password(new_password), settings.bcrypt_rounds)
    User.update(password_hash=password_hash).where(User.id == user.id).execute()


def set_admin(username: str, is_admin: bool) -> User:
    user = require_user(username)
    User.update(is_admin=is_admin).where(User.id == user.id).execute()
    return get_user(user.id)


def set_disabled(username: str, is_disabled: bool) -> User:
    user = require_user(username)
    User.update(is_disabled=is_disabled).where(User.id == user.id).execute()
    return get_user(user.id)


def unlock_user(username: str) -> User:
    user = require_user(username)
    User.update(failed_logins=0, first_failed_at=None, locked_until=None).where(User.id == user.id).execute()
    return get_user(user.id)


def list_users() -> list[User]:
    return list(User.select().order_by(User.id))
