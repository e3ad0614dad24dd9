"""A user's own chat history, newest first, one page at a time."""

from __future__ import annotations

from dataclasses import dataclass

from ..numbers import page_bounds, parse_page
from ..store.history_queries import HistoryRow, count_history, select_history_page


@dataclass(frozen=True)
class HistoryPage:
    rows: list[HistoryRow]
    page: int
    total_pages: int
    total: int


def list_history(user_id: int, page=1, page_size: int = 20) -> HistoryPage:
    """Only `user_id`'s rows, ever. A page past the end shows the last page."""
    page = parse_page(page)
    total = count_history(user_id)
    page, total_pages = page_bounds(page, total, page_size)
    rows = select_history_page(user_id, page_size, (page - 1) * page_size)
    return HistoryPage(rows=rows, page=page, total_pages=total_pages, total=total)
