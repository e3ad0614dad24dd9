"""The administrator's account actions (grant, disable, promote, unlock, reset password, create), each
re-checked and recorded in admin_actions, and the accounts list the Admin tab shows.

The one way to change another account: the Admin tab and the command line both call these, and
nothing else in the package writes a role, a disabled flag, a lock-out or a password of another
account (auth.py keeps only sign-in and one's own password).

Every action runs in one transaction that first re-reads the acting administrator: someone demoted
or disabled a moment ago acts no more. `by=None` is the command line, whose user owns the data
directory. No administrator in the app can leave it without an enabled administrator; the command
line can (it is how one recovers: `users promote`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..billing import ledger
from . import auth, sessions
from ..config import Settings
from ..store import account_queries, admin_queries
from ..store.db import User, transaction, utcnow
from ..errors import LastAdministratorError, PermissionDeniedError, ValidationError
from ..numbers import page_bounds, whole_number

COMMAND_LINE = "command line"
MAX_NOTE_CHARS = 200
MAX_GRANT = 1_000_000  # a typo's extra zeros stop here; a larger grant is several grants


@dataclass(frozen=True)
class AccountRow:
    id: int
    username: str
    balance: int
    held: int
    role: str  # admin | user
    state: str  # active | disabled | locked
    last_login_at: dt.datetime | None
    requests: int


def _acting(by: int | None) -> tuple[int | None, str]:
    """The actor's id and name, re-read inside the action's transaction; refuses a non-administrator."""
    if by is None:
        return None, COMMAND_LINE
    actor = account_queries.find_user_by_id(by)
    if actor is None or not actor.is_admin or actor.is_disabled:
        raise PermissionDeniedError("Administrators only.")
    return actor.id, actor.username


def _record(actor: tuple[int | None, str], action: str, target: User | None, detail: str = "") -> None:
    admin_queries.insert_admin_action(actor[0], actor[1], action, target.id if target else None, detail)


# One template per action, so that each can be translated as a whole sentence.
LAST_ADMINISTRATOR = {
    "demote": "Cannot demote {username}: they are the only enabled administrator. Promote another account first.",
    "disable": "Cannot disable {username}: they are the only enabled administrator. Promote another account first.",
}


def _keep_an_administrator(by: int | None, target: User, verb: str) -> None:
    """Refuse an administrator demoting or disabling the last enabled administrator."""
    if by is None or not target.is_admin or target.is_disabled:
        return
    if account_queries.count_other_enabled_admins(target.id) == 0:
        raise LastAdministratorError(LAST_ADMINISTRATOR[verb], username=target.username)


def validate_note(note) -> str:
    if note is None:
        return ""
    if not isinstance(note, str):
        raise ValidationError("A note must be text.")
    note = " ".join(note.split())
    if len(note) > MAX_NOTE_CHARS:
        raise ValidationError("A note is at most {n} characters.", n=MAX_NOTE_CHARS)
    if any(ord(c) < 32 or c == "\x7f" or 0xD800 <= ord(c) <= 0xDFFF for c in note):
        # a lone surrogate (JSON can carry "\ud800") cannot reach SQLite; control characters garble the ledger
        raise ValidationError("A note cannot contain control characters or invalid text.")
    return note


def parse_grant(value) -> int:
    """A non-zero whole number of credits (negative corrects), from an int or typed text."""
    value = whole_number(value)
    if value is None or value == 0 or abs(value) > MAX_GRANT:
        raise ValidationError("Credits to grant: a non-zero whole number from -{maximum:,} to {maximum:,}.", maximum=MAX_GRANT)
    return value


def grant_credits(by: int | None, username, amount, note=None) -> ledger.LedgerEntry:
    """Credits from an administrator: a ledger entry naming them, and an admin_actions row."""
    amount, note = parse_grant(amount), validate_note(note)
    target = auth.require_user(username)
    with transaction():
        actor = _acting(by)
        ledger_note = (note or None) if by is not None else (f"[{COMMAND_LINE}] {note}" if note else f"[{COMMAND_LINE}]")
        entry = ledger.grant_credits(target.id, amount, actor_id=actor[0], note=ledger_note)
        _record(actor, "grant", target, f"{amount:+d} credits" + (f": {note}" if note else ""))
    return entry


def set_disabled(by: int | None, username, disabled: bool) -> User:
    """Disabling ends the account's sessions; its API keys stop working (keys.resolve_key)."""
    target = auth.require_user(username)
    with transaction():
        actor = _acting(by)
        target = auth.get_user(target.id)  # as it is now, inside the lock
        if disabled:
            _keep_an_administrator(by, target, "disable")
        account_queries.update_disabled_flag(target.id, disabled)
        if disabled:
            sessions.revoke_user_sessions(target.id)
        _record(actor, "disable" if disabled else "enable", target)
    return auth.get_user(target.id)


def set_admin(by: int | None, username, is_admin: bool) -> User:
    """A demotion ends the account's sessions, so no open page keeps an administrator's view."""
    target = auth.require_user(username)
    with transaction():
        actor = _acting(by)
        target = auth.get_user(target.id)
        if not is_admin:
            _keep_an_administrator(by, target, "demote")
        account_queries.update_admin_flag(target.id, is_admin)
        if target.is_admin and not is_admin:
            sessions.revoke_user_sessions(target.id)
        _record(actor, "promote" if is_admin else "demote", target)
    return auth.get_user(target.id)


def unlock(by: int | None, username) -> User:
    target = auth.require_user(username)
    with transaction():
        actor = _acting(by)
        # Every client's lock-out of this account, and the account-wide one from before issue 10.
        account_queries.clear_account_lock(target.id)
        account_queries.clear_throttles(auth.username_key(target.username))
        _record(actor, "unlock", target)
    return auth.get_user(target.id)


def reset_password(settings: Settings, by: int | None, username, new_password) -> User:
    """An administrator sets a new password; every session of the account ends."""
    target = auth.require_user(username)
    password_hash = auth.hash_password(auth.validate_password(new_password), settings.bcrypt_rounds)  # outside the lock
    with transaction():
        actor = _acting(by)
        account_queries.update_password_hash(target.id, password_hash)
        sessions.revoke_user_sessions(target.id)  # whoever knew the old password is signed out
        _record(actor, "reset_password", target)  # the password itself is never recorded
    return auth.get_user(target.id)


def create_user(settings: Settings, by: int | None, username, password, *, admin: bool = False) -> User:
    """An account made by an administrator: open whether or not registration is (allow_registration)."""
    username = auth.validate_username(username)
    password_hash = auth.hash_password(auth.validate_password(password), settings.bcrypt_rounds)
    with transaction():
        actor = _acting(by)
        user_id = auth.create_account(settings, username, password_hash, admin=admin)
        target = auth.get_user(user_id)
        _record(actor, "create_user", target, "administrator" if target.is_admin else "")
    return target


def list_accounts(search: str = "", *, page: int = 1, page_size: int = 20, now: dt.datetime | None = None) -> tuple[list[AccountRow], int]:
    """One page of accounts (by name, those containing `search`), and how many match in all.

    A page past the end is the last page (as the other lists): counted first, so a huge page number
    never reaches SQL's OFFSET, which overflows past 2**63.
    """
    now = now or utcnow()
    search = search.strip() if isinstance(search, str) else ""
    if search and not search.isascii():
        return [], 0  # usernames are ASCII: nothing else matches, and a lone surrogate never reaches SQLite
    total = admin_queries.count_users_matching(search)
    page, _ = page_bounds(max(1, page), total, page_size)
    return _account_rows(admin_queries.find_users_page(search, page, page_size), now), total


def find_account(user_id: int, *, now: dt.datetime | None = None) -> AccountRow | None:
    """One account as the accounts list shows it (its role and state as they are now); None if there is none."""
    user = account_queries.find_user_by_id(user_id)
    return _account_rows([user], now or utcnow())[0] if user is not None else None


def _account_rows(users: list[User], now: dt.datetime) -> list[AccountRow]:
    ids = [u.id for u in users]
    requests = admin_queries.count_requests_by_user(ids)
    # A sign-up signs in too, without touching last_login_at: the newest session counts as well.
    signed_in = admin_queries.latest_session_start_by_user(ids)
    locked = admin_queries.find_locked_username_keys([u.username.lower() for u in users], now)
    return [
        AccountRow(
            id=u.id, username=u.username, balance=u.balance, held=u.held, role="admin" if u.is_admin else "user",
            state="disabled" if u.is_disabled else ("locked" if u.username.lower() in locked else "active"),
            last_login_at=_latest(u.last_login_at, signed_in.get(u.id)), requests=requests.get(u.id, 0),
        )
        for u in users
    ]


def _latest(*times) -> dt.datetime | None:
    found = [t if isinstance(t, dt.datetime) else dt.datetime.fromisoformat(str(t)) for t in times if t is not None]
    return max(found) if found else None


def recent_actions(limit: int = 20) -> list[tuple[dt.datetime, str, str, str, str]]:
    """The latest administrator actions: (time, actor, action, target, detail), newest first."""
    rows = admin_queries.list_recent_actions(limit)
    return [(created_at, actor, action, name or "", detail) for created_at, actor, action, name, detail in rows]
