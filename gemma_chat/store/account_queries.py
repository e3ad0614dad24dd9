"""Accounts in the database: the users rows (names, passwords, admin and disabled flags, the first-admin
lock) and login_throttles, the failed sign-ins of one username from one client (accounts/auth.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Iterator

import peewee as pw

from .db import LoginThrottle, User, database, dialect


def find_user_by_id(user_id: int) -> User | None:
    return User.get_or_none(User.id == user_id)


def find_user_by_name(username: str) -> User | None:
    """The user of this name in any letter case."""
    return User.select().where(pw.fn.lower(User.username) == username.lower()).first()


def list_users() -> list[User]:
    return list(User.select().order_by(User.id))


@contextlib.contextmanager
def first_admin_lock() -> Iterator[None]:
    """Alone among every process on the database until the caller's transaction ends: two first
    sign-ups at once on PostgreSQL would otherwise both see no users and both become administrators."""
    with dialect().exclusive(database, "first-admin"):
        yield


def any_user_exists() -> bool:
    return bool(database.execute_sql("SELECT 1 FROM users LIMIT 1").fetchone())


def insert_user(username: str, password_hash: str, *, is_admin: bool) -> int | None:
    """The new user's id; None when the name is taken in any letter case (then the caller's
    transaction must roll back: on PostgreSQL it can run nothing more)."""
    try:
        return User.create(username=username, password_hash=password_hash, is_admin=is_admin).id
    except pw.IntegrityError as exc:
        if "username" in str(exc):
            return None
        raise


def update_password_hash(user_id: int, password_hash: str) -> None:
    User.update(password_hash=password_hash).where(User.id == user_id).execute()


def update_admin_flag(user_id: int, is_admin: bool) -> None:
    User.update(is_admin=is_admin).where(User.id == user_id).execute()


def update_disabled_flag(user_id: int, is_disabled: bool) -> None:
    User.update(is_disabled=is_disabled).where(User.id == user_id).execute()


def update_last_login(user_id: int, now: dt.datetime) -> None:
    User.update(last_login_at=now).where(User.id == user_id).execute()


def count_other_enabled_admins(user_id: int) -> int:
    """Enabled administrators besides this user."""
    return User.select().where(User.is_admin == True, User.is_disabled == False, User.id != user_id).count()  # noqa: E712


def clear_account_lock(user_id: int) -> None:
    """End the account-wide lock-out of before issue 10 (kept on the users row)."""
    User.update(failed_logins=0, first_failed_at=None, locked_until=None).where(User.id == user_id).execute()


# login_throttles: one row per (username key, client)


def find_throttle(key: str, client: str) -> LoginThrottle | None:
    return LoginThrottle.get_or_none(LoginThrottle.username_key == key, LoginThrottle.client == client)


def count_recent_failures(key: str, since: dt.datetime, per_lock: int) -> tuple[int, dt.datetime | None]:
    """Failures of this username from every client updated since `since` (each lock-out counting
    `per_lock`), and the latest update among them."""
    recent = LoginThrottle.select(
        pw.fn.COALESCE(pw.fn.SUM(LoginThrottle.failures + LoginThrottle.locks * per_lock), 0),
        pw.fn.MAX(LoginThrottle.updated_at),
    ).where(LoginThrottle.username_key == key, LoginThrottle.updated_at >= since).tuples().first()
    failures, last = recent if recent else (0, None)
    if last is not None and not isinstance(last, dt.datetime):
        last = dt.datetime.fromisoformat(str(last))  # MAX() comes back as the stored text
    return int(failures or 0), last


def claim_throttle(key: str, client: str, now: dt.datetime) -> LoginThrottle:
    """This pair's throttle row, made if new and locked until the caller's transaction ends.

    Written before it is read: the upsert takes the row's lock, so two failures at once (on
    PostgreSQL's READ COMMITTED) count twice instead of both reading the same count.
    """
    LoginThrottle.insert(username_key=key, client=client, updated_at=now).on_conflict(
        conflict_target=[LoginThrottle.username_key, LoginThrottle.client], update={LoginThrottle.updated_at: now}
    ).execute()
    return LoginThrottle.get(LoginThrottle.username_key == key, LoginThrottle.client == client)


def update_throttle_failures(key: str, client: str, failures: int, first_failed_at: dt.datetime, now: dt.datetime) -> None:
    LoginThrottle.update(failures=failures, first_failed_at=first_failed_at, updated_at=now).where(
        LoginThrottle.username_key == key, LoginThrottle.client == client
    ).execute()


def lock_out_client(key: str, client: str, locks: int, until: dt.datetime, now: dt.datetime) -> None:
    """Start this client's lock-out of this username: its failures start again from none."""
    LoginThrottle.update(failures=0, first_failed_at=None, locks=locks, locked_until=until, updated_at=now).where(
        LoginThrottle.username_key == key, LoginThrottle.client == client
    ).execute()


def delete_stale_throttles(before: dt.datetime) -> None:
    """Throttles untouched since `before` of clients that never signed in: they protect nothing."""
    LoginThrottle.delete().where(LoginThrottle.updated_at < before, LoginThrottle.last_success_at.is_null()).execute()


def record_sign_in_success(key: str, client: str, now: dt.datetime) -> None:
    """A sign-in of this client as this username: its failures and lock-outs end, and it is known from now on."""
    LoginThrottle.insert(
        username_key=key, client=client, failures=0, locks=0, last_success_at=now, updated_at=now
    ).on_conflict(
        conflict_target=[LoginThrottle.username_key, LoginThrottle.client],
        update={
            LoginThrottle.failures: 0, LoginThrottle.first_failed_at: None, LoginThrottle.locks: 0,
            LoginThrottle.locked_until: None, LoginThrottle.last_success_at: now, LoginThrottle.updated_at: now,
        },
    ).execute()


def list_locked_clients(key: str, now: dt.datetime) -> list[tuple[str, dt.datetime]]:
    """The clients locked out of this username at `now`, with the end of each lock-out."""
    rows = LoginThrottle.select().where(LoginThrottle.username_key == key, LoginThrottle.locked_until > now)
    return [(row.client, row.locked_until) for row in rows]


def clear_throttles(key: str) -> None:
    """End every client's lock-out of this username."""
    LoginThrottle.update(failures=0, first_failed_at=None, locks=0, locked_until=None).where(
        LoginThrottle.username_key == key
    ).execute()
