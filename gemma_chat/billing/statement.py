"""A user's statement: every ledger entry of theirs, a page at a time, totals by kind, and a CSV.

Only the given user's rows, ever (store/history_queries.py reads them).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import TextIO

from ..numbers import page_bounds, parse_page
from .ledger import KINDS
from ..store.db import LedgerEntry
from ..store.history_queries import count_ledger_entries, iter_ledger_entries, select_statement_page, sum_ledger_by_kind

CSV_COLUMNS = ["entry", "created_at_utc", "kind", "amount", "balance_after", "request_id", "note"]
# A spreadsheet runs a cell that starts like a formula; a note is free text an admin typed.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class StatementPage:
    entries: list[LedgerEntry]  # newest first
    page: int
    total_pages: int
    total: int


@dataclass(frozen=True)
class KindTotal:
    kind: str  # one of ledger.KINDS
    entries: int
    credits: int  # the sum of the entries' amounts: negative for charges


def list_statement(user_id: int, page=1, page_size: int = 20) -> StatementPage:
    """One page of `user_id`'s entries, newest first. A page past the end shows the last page."""
    page = parse_page(page)
    total = count_ledger_entries(user_id)
    page, total_pages = page_bounds(page, total, page_size)
    entries = select_statement_page(user_id, page_size, (page - 1) * page_size)
    return StatementPage(entries, page, total_pages, total)


def totals_by_kind(user_id: int) -> list[KindTotal]:
    """Entries and credits of each kind, in ledger.KINDS order (a kind with no entries is zero).

    Their credits add up to the balance, since the balance changes only through the ledger.
    """
    found = sum_ledger_by_kind(user_id)
    return [KindTotal(kind, *found.get(kind, (0, 0))) for kind in KINDS]


def write_statement_csv(user_id: int, out: TextIO) -> int:
    """Every entry of `user_id`, oldest first, as CSV with a header row; returns the entries written."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    written = 0
    for entry_id, created_at, kind, amount, balance_after, request_id, note in iter_ledger_entries(user_id):
        writer.writerow([entry_id, str(created_at)[:19], kind, amount, balance_after, request_id or "", _as_text(note)])
        written += 1
    return written


def _as_text(value: str | None) -> str:
    if not value:
        return ""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value
