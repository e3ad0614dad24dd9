"""The money's SQL: users' balance and held totals, the ledger entries and the holds.

Each write is one guarded statement that reports whether its guard let it through; billing/ledger.py decides
what a refusal means and holds the transaction. The per-turn statements are plain SQL: building them
with the ORM cost more than SQLite's own work (bench/ledger.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .db import Hold, LedgerEntry, database, utcnow


def read_balance(user_id: int) -> tuple[int, int] | None:
    """The user's (balance, held), or None without such a user."""
    row = database.execute_sql("SELECT balance, held FROM users WHERE id = ?", (user_id,)).fetchone()
    return None if row is None else (row[0], row[1])


def append_ledger_entry(
    user_id: int,
    amount: int,
    kind: str,
    *,
    request_id: str | None,
    note: str | None,
    actor_id: int | None,
    unhold: int,
) -> LedgerEntry | None:
    """Move the balance by `amount` (and the held total by -unhold) and record the entry.

    None when the guard refuses (available credits would go negative, or the user is missing):
    nothing was written.
    """
    row = database.execute_sql(
        "UPDATE users SET balance = balance + ?, held = held - ? "
        "WHERE id = ? AND balance + ? >= held - ? AND held - ? >= 0 RETURNING balance",
        (amount, unhold, user_id, amount, unhold, unhold),
    ).fetchone()
    if row is None:
        return None
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


def insert_hold(request_id: str, user_id: int, amount: int, instance_id: str | None) -> Hold | None:
    """Add `amount` to the user's held total and record the active hold; None when the user's
    available credits are below it (nothing written)."""
    updated = database.execute_sql(
        "UPDATE users SET held = held + ? WHERE id = ? AND balance - held >= ?",
        (amount, user_id, amount),
    ).rowcount
    if updated != 1:
        return None
    created_at = utcnow()
    cursor = database.execute_sql(
        "INSERT INTO holds (request_id, user_id, amount, status, created_at, instance_id) "
        "VALUES (?, ?, ?, 'active', ?, ?) RETURNING id",
        (request_id, user_id, amount, str(created_at), instance_id),
    )
    return Hold(id=cursor.fetchone()[0], request_id=request_id, user=user_id, amount=amount, status="active", created_at=created_at)


def find_hold(request_id: str) -> Hold | None:
    """The hold's id, user, amount and status."""
    row = database.execute_sql(
        "SELECT id, user_id, amount, status FROM holds WHERE request_id = ?", (request_id,)
    ).fetchone()
    if row is None:
        return None
    return Hold(id=row[0], request_id=request_id, user=row[1], amount=row[2], status=row[3])


def settle_hold(request_id: str, status: str, reason: str | None = None) -> Hold | None:
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


def reduce_held(user_id: int, amount: int) -> bool:
    """Take a settled hold's amount off the user's held total; False if the total is below it."""
    return database.execute_sql(
        "UPDATE users SET held = held - ? WHERE id = ? AND held >= ?", (amount, user_id, amount)
    ).rowcount == 1


def find_active_holds(
    *, created_before: dt.datetime | None = None, unowned_only: bool = False, instance_ids: list[str] | None = None
) -> list[Hold]:
    """Active holds, oldest first: only those made before `created_before`, only those no app
    instance stamped, or only those these instances stamped, as asked."""
    query = Hold.select().where(Hold.status == "active")
    if created_before is not None:
        query = query.where(Hold.created_at < created_before)
    if unowned_only:
        query = query.where(Hold.instance_id.is_null())
    if instance_ids is not None:
        query = query.where(Hold.instance_id.in_(instance_ids))
    return list(query.order_by(Hold.created_at))


def count_active_holds() -> tuple[int, int]:
    """(holds open, credits they reserve), for /metrics."""
    count, credits = database.execute_sql("SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM holds WHERE status = 'active'").fetchone()
    return int(count), int(credits)


# --- what verify compares --------------------------------------------------------------------------


@dataclass(frozen=True)
class UserBooks:
    """One user's balance and held totals beside what the entries and holds add up to."""

    user_id: int
    username: str
    balance: int
    held: int
    entries_sum: int
    active_holds_sum: int
    last_balance_after: int | None  # the newest entry's running balance; None without entries


def read_books_per_user() -> list[UserBooks]:
    """Every user's totals next to the sums of their entries and active holds, by user id."""
    rows = database.execute_sql(
        """SELECT u.id, u.username, u.balance, u.held,
                  COALESCE((SELECT SUM(amount) FROM ledger_entries e WHERE e.user_id = u.id), 0),
                  COALESCE((SELECT SUM(amount) FROM holds h WHERE h.user_id = u.id AND h.status = 'active'), 0),
                  (SELECT balance_after FROM ledger_entries e WHERE e.user_id = u.id ORDER BY id DESC LIMIT 1)
           FROM users u ORDER BY u.id"""
    )
    return [UserBooks(*row) for row in rows]


def count_charges_per_captured_hold() -> list[tuple[str, int]]:
    """(request id, number of charge entries) of every captured hold."""
    return list(database.execute_sql(
        """SELECT h.request_id, (SELECT COUNT(*) FROM ledger_entries e WHERE e.kind = 'charge' AND e.request_id = h.request_id)
           FROM holds h WHERE h.status = 'captured'"""
    ))


def find_charges_without_captured_hold() -> list[str]:
    """Request ids of charge entries no captured hold of the same user and amount matches."""
    return [request_id for (request_id,) in database.execute_sql(
        """SELECT e.request_id FROM ledger_entries e WHERE e.kind = 'charge' AND NOT EXISTS
           (SELECT 1 FROM holds h WHERE h.request_id = e.request_id AND h.status = 'captured'
            AND h.amount = -e.amount AND h.user_id = e.user_id)"""
    )]
