"""Credits: balances, holds, captures, releases, top-ups and grants.

Every balance change is a ledger entry written in the same transaction as SQL arithmetic with a
guard (`balance = balance + ?` ... `WHERE balance + ? >= held`), never read-modify-write in Python.
A chat turn holds its price first, then captures it (a charge entry) or releases it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from . import instances
from .store.db import Hold, LedgerEntry, User, database, joined_transaction, transaction, utcnow
from .errors import HoldNotFoundError, InsufficientCreditsError, UnknownUserError, ValidationError

KINDS = ("signup", "topup", "grant", "charge")


@dataclass(frozen=True)
class Balance:
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True)
class Settlement:
    """What capture or release did. `changed` is False when the hold was already settled."""

    request_id: str
    status: str  # the hold's status afterwards: captured | released
    amount: int
    changed: bool
    message: str


def new_request_id() -> str:
    return uuid.uuid4().hex


def parse_credits(value, *, maximum: int, what: str = "Credits") -> int:
    """A whole number of credits from 1 to `maximum`, from an int or the text a person typed."""
    if isinstance(value, bool):
        raise ValidationError(f"{what} must be a whole number.")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValidationError(f"{what} must be a whole number, not {value:g}.")
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValidationError(f"Enter {what.lower()} as a whole number from 1 to {maximum:,}.")
        if not (text.isascii() and text.lstrip("+-").isdigit()) or len(text) > 12:
            raise ValidationError(f"{what} must be a whole number from 1 to {maximum:,}.")
        value = int(text)
    if not isinstance(value, int):
        raise ValidationError(f"{what} must be a whole number from 1 to {maximum:,}.")
    if not 1 <= value <= maximum:
        raise ValidationError(f"{what} must be from 1 to {maximum:,}; got {value:,}.")
    return value


def get_balance(user_id: int) -> Balance:
    row = database.execute_sql("SELECT balance, held FROM users WHERE id = ?", (user_id,)).fetchone()
    if row is None:
        raise UnknownUserError(f"No user with id {user_id}.")
    return Balance(balance=row[0], held=row[1])


def _append_entry(
    user_id: int,
    amount: int,
    kind: str,
    *,
    request_id: str | None = None,
    note: str | None = None,
    actor_id: int | None = None,
    unhold: int = 0,
) -> LedgerEntry:
    """Move the balance by `amount` (and the held total by -unhold) and record it. Caller holds a transaction.

    The guard keeps available credits non-negative; a refused guard raises InsufficientCreditsError.
    """
    row = database.execute_sql(
        "UPDATE users SET balance = balance + ?, held = held - ? "
        "WHERE id = ? AND balance + ? >= held - ? AND held - ? >= 0 RETURNING balance",
        (amount, unhold, user_id, amount, unhold, unhold),
    ).fetchone()
    if row is None:
        available = get_balance(user_id).available  # raises UnknownUserError for a missing user
        raise InsufficientCreditsError(
            f"Not enough credits: this needs {-amount}, you have {available} available.",
            price=-amount,
            available=available,
        )
    # Plain SQL on the per-turn path: building it with the ORM cost more than SQLite's own work.
    created_at = utcnow()
    cursor = database.execute_sql(
        "INSERT INTO ledger_entries (user_id, amount, kind, balance_after, request_id, note, actor_id, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (user_id, amount, kind, row[0], request_id, note, actor_id, str(created_at)),
    )
    return LedgerEntry(
        id=cursor.fetchone()[0],
        user=user_id,
        amount=amount,
        kind=kind,
        balance_after=row[0],
        request_id=request_id,
        note=note,
        actor=actor_id,
        created_at=created_at,
    )


def credit_signup(user_id: int, amount: int) -> LedgerEntry | None:
    """The starting balance of a new account (called inside the registration transaction)."""
    if amount <= 0:
        return None
    with transaction():
        return _append_entry(user_id, amount, "signup", note="starting balance")


def top_up(user_id: int, amount, *, maximum: int) -> LedgerEntry:
    amount = parse_credits(amount, maximum=maximum)
    with transaction():
        return _append_entry(user_id, amount, "topup", actor_id=user_id)


def grant_credits(user_id: int, amount: int, *, actor_id: int | None, note: str | None = None) -> LedgerEntry:
    """An admin's grant (positive) or correction (negative); a correction never takes held credits."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise ValidationError("A grant must be a non-zero whole number of credits.")
    with transaction():
        return _append_entry(user_id, amount, "grant", note=note, actor_id=actor_id)


def hold_credits(user_id: int, amount: int, request_id: str | None = None) -> Hold:
    """Reserve `amount` before generating. Refuses when balance minus active holds is below it."""
    if amount <= 0:
        raise ValidationError("A hold must be at least 1 credit.")
    request_id = request_id or new_request_id()
    with joined_transaction():
        updated = database.execute_sql(
            "UPDATE users SET held = held + ? WHERE id = ? AND balance - held >= ?",
            (amount, user_id, amount),
        ).rowcount
        if updated != 1:
            available = get_balance(user_id).available
            raise InsufficientCreditsError(
                f"Not enough credits: this answer costs {amount}, you have {available}.",
                price=amount,
                available=available,
            )
        created_at = utcnow()
        cursor = database.execute_sql(
            "INSERT INTO holds (request_id, user_id, amount, status, created_at, instance_id) "
            "VALUES (?, ?, ?, 'active', ?, ?) RETURNING id",
            (request_id, user_id, amount, str(created_at), instances.current_instance_id()),
        )
        return Hold(id=cursor.fetchone()[0], request_id=request_id, user=user_id, amount=amount, status="active", created_at=created_at)


def _find_hold(request_id: str) -> Hold:
    """The hold's id, user, amount and status (HoldNotFoundError without one)."""
    row = database.execute_sql(
        "SELECT id, user_id, amount, status FROM holds WHERE request_id = ?", (request_id,)
    ).fetchone()
    if row is None:
        raise HoldNotFoundError(f"No hold for request {request_id}.")
    return Hold(id=row[0], request_id=request_id, user=row[1], amount=row[2], status=row[3])


def _unchanged(hold: Hold, verb: str) -> Settlement:
    return Settlement(
        hold.request_id, hold.status, hold.amount, False, f"Hold {hold.request_id} was already {hold.status}; {verb} changed nothing."
    )


def _settle_active(request_id: str, status: str, reason: str | None = None) -> Hold | None:
    """Move the hold from active to `status` in one guarded UPDATE; None if it was not active.

    Reading the status first and writing it after would let two settlements of one hold both see
    "active" on a database without a single writer (PostgreSQL's READ COMMITTED): the guard makes
    the second one change nothing, whatever the engine.
    """
    row = database.execute_sql(
        """UPDATE holds SET status = ?, settled_at = ?, release_reason = ?
           WHERE request_id = ? AND status = 'active' RETURNING id, user_id, amount""",
        (status, str(utcnow()), reason, request_id),
    ).fetchone()
    if row is None:
        return None
    return Hold(id=row[0], request_id=request_id, user=row[1], amount=row[2], status=status)


def capture_hold(request_id: str) -> Settlement:
    """Turn an active hold into a charge. Idempotent: a settled hold is left as it is."""
    with joined_transaction():
        hold = _settle_active(request_id, "captured")
        if hold is None:
            return _unchanged(_find_hold(request_id), "capture")
        _append_entry(hold.user_id, -hold.amount, "charge", request_id=request_id, unhold=hold.amount)
        return Settlement(request_id, "captured", hold.amount, True, f"Charged {hold.amount} credits.")


def release_hold(request_id: str, reason: str = "released") -> Settlement:
    """End an active hold without charging. Idempotent."""
    with joined_transaction():
        hold = _settle_active(request_id, "released", reason)
        if hold is None:
            return _unchanged(_find_hold(request_id), "release")
        _unhold(hold)
        return Settlement(request_id, "released", hold.amount, True, f"Released {hold.amount} held credits.")


def _unhold(hold: Hold) -> None:
    updated = database.execute_sql(
        "UPDATE users SET held = held - ? WHERE id = ? AND held >= ?", (hold.amount, hold.user_id, hold.amount)
    ).rowcount
    if updated != 1:
        raise RuntimeError(f"held total of user {hold.user_id} is below hold {hold.request_id}")


def release_stale_holds(
    *, older_than_s: float | None = None, reason: str = "released at start-up", unowned_only: bool = False
) -> list[Hold]:
    """Release holds no generation can still own: all of them (None) or those older than `older_than_s`
    (with `unowned_only`, only holds no app instance stamped).

    Returns the released holds so the caller can mark their chat turns as interrupted.
    """
    query = Hold.select().where(Hold.status == "active")
    if older_than_s is not None:
        query = query.where(Hold.created_at < utcnow() - dt.timedelta(seconds=older_than_s))
    if unowned_only:
        query = query.where(Hold.instance_id.is_null())
    return _release_all(query, reason)


def release_holds_of(instance_ids: list[str], *, reason: str) -> list[Hold]:
    """Release every active hold of these app instances (they are gone: instances.py)."""
    if not instance_ids:
        return []
    return _release_all(Hold.select().where((Hold.status == "active") & Hold.instance_id.in_(instance_ids)), reason)


def _release_all(query, reason: str) -> list[Hold]:
    with transaction():
        released = []
        for hold in list(query):  # read first: the loop changes the rows the query selects
            settled = _settle_active(hold.request_id, "released", reason)
            if settled is not None:
                _unhold(settled)
                released.append(hold)
        return released


def active_holds() -> list[Hold]:
    return list(Hold.select().where(Hold.status == "active").order_by(Hold.created_at))


def recent_entries(user_id: int, limit: int = 20) -> list[LedgerEntry]:
    return list(
        LedgerEntry.select().where(LedgerEntry.user == user_id).order_by(LedgerEntry.id.desc()).limit(limit)
    )


def verify_ledger(*, stale_after_s: float | None = None) -> list[str]:
    """The money invariant for every user: balance = sum of entries >= 0, held = active holds <= balance.

    Also: each captured hold has exactly one charge, each charge a captured hold; entries' running
    balance_after agrees with the sums. Returns one line per problem; empty when healthy.
    """
    problems = []
    rows = database.execute_sql(
        """SELECT u.id, u.username, u.balance, u.held,
                  COALESCE((SELECT SUM(amount) FROM ledger_entries e WHERE e.user_id = u.id), 0),
                  COALESCE((SELECT SUM(amount) FROM holds h WHERE h.user_id = u.id AND h.status = 'active'), 0),
                  (SELECT balance_after FROM ledger_entries e WHERE e.user_id = u.id ORDER BY id DESC LIMIT 1)
           FROM users u ORDER BY u.id"""
    )
    for user_id, username, balance, held, ledger_sum, active_sum, last_after in rows:
        if balance != ledger_sum:
            problems.append(f"user {username}: balance {balance} but ledger entries sum to {ledger_sum}")
        if balance < 0:
            problems.append(f"user {username}: negative balance {balance}")
        if held != active_sum:
            problems.append(f"user {username}: held {held} but active holds sum to {active_sum}")
        if held > balance:
            problems.append(f"user {username}: held {held} exceeds balance {balance}")
        if last_after is not None and last_after != balance:
            problems.append(f"user {username}: last ledger entry says balance {last_after}, account says {balance}")
    for request_id, charges in database.execute_sql(
        """SELECT h.request_id, (SELECT COUNT(*) FROM ledger_entries e WHERE e.kind = 'charge' AND e.request_id = h.request_id)
           FROM holds h WHERE h.status = 'captured'"""
    ):
        if charges != 1:
            problems.append(f"hold {request_id}: captured with {charges} charge entries")
    for (request_id,) in database.execute_sql(
        """SELECT e.request_id FROM ledger_entries e WHERE e.kind = 'charge' AND NOT EXISTS
           (SELECT 1 FROM holds h WHERE h.request_id = e.request_id AND h.status = 'captured'
            AND h.amount = -e.amount AND h.user_id = e.user_id)"""
    ):
        problems.append(f"charge {request_id}: no matching captured hold")
    if stale_after_s is not None:
        cutoff = utcnow() - dt.timedelta(seconds=stale_after_s)
        for hold in Hold.select().where((Hold.status == "active") & (Hold.created_at < cutoff)):
            problems.append(f"hold {hold.request_id}: active since {hold.created_at:%Y-%m-%d %H:%M:%S} UTC (stale)")
    return problems
