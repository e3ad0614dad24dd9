"""Credits: balances, holds, captures, releases, top-ups and grants.

Every balance change is a ledger entry written in the same transaction as SQL arithmetic with a
guard (`balance = balance + ?` ... `WHERE balance + ? >= held`), never read-modify-write in Python.
A chat turn holds its price first, then captures it (a charge entry) or releases it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from ..ops import instances, metrics
from ..store import history_queries, ledger_queries
from ..store.db import Hold, LedgerEntry, joined_transaction, transaction, utcnow
from ..errors import HoldNotFoundError, InsufficientCreditsError, UnknownUserError, ValidationError
from ..numbers import whole_number

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


def parse_credits(value, *, maximum: int) -> int:
    """A whole number of credits from 1 to `maximum`, from an int or the text a person typed."""
    number = whole_number(value)
    if number is None:
        if isinstance(value, bool):
            raise ValidationError("Credits must be a whole number.")
        if isinstance(value, float):
            raise ValidationError("Credits must be a whole number, not {value:g}.", value=value)
        if isinstance(value, str) and not value.strip():
            raise ValidationError("Enter credits as a whole number from 1 to {maximum:,}.", maximum=maximum)
        raise ValidationError("Credits must be a whole number from 1 to {maximum:,}.", maximum=maximum)
    value = number
    if not 1 <= value <= maximum:
        raise ValidationError("Credits must be from 1 to {maximum:,}; got {value:,}.", maximum=maximum, value=value)
    return value


def get_balance(user_id: int) -> Balance:
    row = ledger_queries.read_balance(user_id)
    if row is None:
        raise UnknownUserError("No user with id {user_id}.", user_id=user_id)
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
    entry = ledger_queries.append_ledger_entry(
        user_id, amount, kind, request_id=request_id, note=note, actor_id=actor_id, unhold=unhold
    )
    if entry is None:
        available = get_balance(user_id).available  # raises UnknownUserError for a missing user
        raise InsufficientCreditsError(
            "Not enough credits: this needs {price}, you have {available} available.",
            price=-amount,
            available=available,
        )
    return entry


def credit_signup(user_id: int, amount: int) -> LedgerEntry | None:
    """The starting balance of a new account (called inside the registration transaction)."""
    if amount <= 0:
        return None
    with transaction():
        return _append_entry(user_id, amount, "signup", note="starting balance")


def top_up(user_id: int, amount, *, maximum: int) -> LedgerEntry:
    amount = parse_credits(amount, maximum=maximum)
    with transaction():
        entry = _append_entry(user_id, amount, "topup", actor_id=user_id)
    metrics.credits_topped_up.inc(amount)
    return entry


def open_holds() -> tuple[int, int]:
    """(holds open, credits they reserve): answers in flight, for /metrics."""
    return ledger_queries.count_active_holds()


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
        hold = ledger_queries.insert_hold(request_id, user_id, amount, instances.current_instance_id())
        if hold is None:
            available = get_balance(user_id).available
            raise InsufficientCreditsError(
                "Not enough credits: this answer costs {price}, you have {available}.",
                price=amount,
                available=available,
            )
        return hold


def _find_hold(request_id: str) -> Hold:
    """The hold's id, user, amount and status (HoldNotFoundError without one)."""
    hold = ledger_queries.find_hold(request_id)
    if hold is None:
        raise HoldNotFoundError("No hold for request {request_id}.", request_id=request_id)
    return hold


def _unchanged(hold: Hold, verb: str) -> Settlement:
    return Settlement(
        hold.request_id, hold.status, hold.amount, False, f"Hold {hold.request_id} was already {hold.status}; {verb} changed nothing."
    )


def capture_hold(request_id: str) -> Settlement:
    """Turn an active hold into a charge. Idempotent: a settled hold is left as it is."""
    with joined_transaction():
        hold = ledger_queries.settle_hold(request_id, "captured")
        if hold is None:
            return _unchanged(_find_hold(request_id), "capture")
        _append_entry(hold.user_id, -hold.amount, "charge", request_id=request_id, unhold=hold.amount)
        return Settlement(request_id, "captured", hold.amount, True, f"Charged {hold.amount} credits.")


def release_hold(request_id: str, reason: str = "released") -> Settlement:
    """End an active hold without charging. Idempotent."""
    with joined_transaction():
        hold = ledger_queries.settle_hold(request_id, "released", reason)
        if hold is None:
            return _unchanged(_find_hold(request_id), "release")
        _unhold(hold)
        return Settlement(request_id, "released", hold.amount, True, f"Released {hold.amount} held credits.")


def _unhold(hold: Hold) -> None:
    if not ledger_queries.reduce_held(hold.user_id, hold.amount):
        raise RuntimeError(f"held total of user {hold.user_id} is below hold {hold.request_id}")


def release_stale_holds(
    *, older_than_s: float | None = None, reason: str = "released at start-up", unowned_only: bool = False
) -> list[Hold]:
    """Release holds no generation can still own: all of them (None) or those older than `older_than_s`
    (with `unowned_only`, only holds no app instance stamped).

    Returns the released holds so the caller can mark their chat turns as interrupted.
    """
    created_before = None if older_than_s is None else utcnow() - dt.timedelta(seconds=older_than_s)
    with transaction():
        holds = ledger_queries.find_active_holds(created_before=created_before, unowned_only=unowned_only)
        return _release_all(holds, reason)


def release_holds_of(instance_ids: list[str], *, reason: str) -> list[Hold]:
    """Release every active hold of these app instances (they are gone: ops/instances.py)."""
    if not instance_ids:
        return []
    with transaction():
        return _release_all(ledger_queries.find_active_holds(instance_ids=instance_ids), reason)


def _release_all(holds: list[Hold], reason: str) -> list[Hold]:
    """Release those of `holds` still active (the caller holds the transaction they were read in)."""
    released = []
    for hold in holds:
        settled = ledger_queries.settle_hold(hold.request_id, "released", reason)
        if settled is not None:
            _unhold(settled)
            released.append(hold)
    return released


def active_holds() -> list[Hold]:
    return ledger_queries.find_active_holds()


def recent_entries(user_id: int, limit: int = 20) -> list[LedgerEntry]:
    return history_queries.select_statement_page(user_id, limit, 0)


def verify_ledger(*, stale_after_s: float | None = None) -> list[str]:
    """The money invariant for every user: balance = sum of entries >= 0, held = active holds <= balance.

    Also: each captured hold has exactly one charge, each charge a captured hold; entries' running
    balance_after agrees with the sums. Returns one line per problem; empty when healthy.
    """
    problems = []
    for books in ledger_queries.read_books_per_user():
        username, balance, held = books.username, books.balance, books.held
        ledger_sum, active_sum, last_after = books.entries_sum, books.active_holds_sum, books.last_balance_after
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
    for request_id, charges in ledger_queries.count_charges_per_captured_hold():
        if charges != 1:
            problems.append(f"hold {request_id}: captured with {charges} charge entries")
    for request_id in ledger_queries.find_charges_without_captured_hold():
        problems.append(f"charge {request_id}: no matching captured hold")
    if stale_after_s is not None:
        cutoff = utcnow() - dt.timedelta(seconds=stale_after_s)
        for hold in ledger_queries.find_active_holds(created_before=cutoff):
            problems.append(f"hold {hold.request_id}: active since {hold.created_at:%Y-%m-%d %H:%M:%S} UTC (stale)")
    return problems
