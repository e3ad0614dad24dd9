"""A user's own chat history, newest first, one page at a time."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ValidationError
from ..store.history_queries import HistoryRow, count_history, select_history_page


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


def list_history(user_id: int, page=1, page_size: int = 20) -> HistoryPage:
    """Only `user_id`'s rows, ever. A page past the end shows the last page."""
    page = parse_page(page)
    total = count_history(user_id)
    page, total_pages = page_bounds(page, total, page_size)
    rows = select_history_page(user_id, page_size, (page - 1) * page_size)
    return HistoryPage(rows=rows, page=page, total_pages=total_pages, total=total)
