"""A user's own chat history, newest first, one page at a time."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from .store.db import database
from .errors import ValidationError


@dataclass(frozen=True)
class HistoryRow:
    created_at: dt.datetime
    model_name: str
    tier: str
    credits_charged: int
    status: str
    prompt: str
    answer: str
    request_id: str
    source: str = "ui"  # ui | api


HISTORY_FIELDS = [field.name for field in dataclasses.fields(HistoryRow)]


@dataclass(frozen=True)
class HistoryPage:
    rows: list[HistoryRow]
    page: int
    total_pages: int
    total: int


def parse_page(value) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValidationError("A page number is a whole number from 1.")
    try:
        page = int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValidationError("A page number is a whole number from 1.") from None
    if page < 1:
        raise ValidationError("A page number is a whole number from 1.")
    return page


def page_bounds(page: int, total: int, page_size: int) -> tuple[int, int]:
    """The page to show of `total` rows (a page past the end shows the last one), and the page count."""
    total_pages = max(1, -(-total // page_size))
    return min(page, total_pages), total_pages


def neighbour_page(page, step: int) -> int:
    """The page `step` away from a list's current page; a value no page sends counts as page 1."""
    try:
        current = parse_page(page or 1)
    except ValidationError:
        current = 1
    return max(1, current + step)


# Plain SQL: Peewee building these two queries cost more than either engine answering them
# (bench postgres: 0.20 of raw psycopg per page, 0.79 with the same statements sent as text).
_COUNT_SQL = "SELECT COUNT(*) FROM interactions WHERE user_id = ?"
_PAGE_SQL = (
    f"SELECT {', '.join(HISTORY_FIELDS)} FROM interactions WHERE user_id = ? "
    "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
)


def list_history(user_id: int, page=1, page_size: int = 20) -> HistoryPage:
    """Only `user_id`'s rows, ever. A page past the end shows the last page."""
    page = parse_page(page)
    total = database.execute_sql(_COUNT_SQL, (user_id,)).fetchone()[0]
    page, total_pages = page_bounds(page, total, page_size)
    cursor = database.execute_sql(_PAGE_SQL, (user_id, page_size, (page - 1) * page_size))
    rows = [HistoryRow(dt.datetime.fromisoformat(created_at), *rest) for created_at, *rest in cursor]
    return HistoryPage(rows=rows, page=page, total_pages=total_pages, total=total)
