"""Whole numbers from what people and clients send, and the paging every list shares.

One parser for every number a user types or a client posts (credits, a grant, a page): the same
input means the same number everywhere, and anything else is refused by the caller with its own
message, never with a traceback.
"""

from __future__ import annotations

import re

from .errors import ValidationError

_TYPED_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,12}")  # ASCII digits only: "٣", "1_000", "1e3" are not numbers here


def whole_number(value) -> int | None:
    """The int in an int, an integral float or typed text (" +12 "); None for anything else.

    A bool is not a number here (JSON true would otherwise be 1 credit), nor is 2.5, "five", "+-5"
    or text longer than 12 digits.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and _TYPED_WHOLE_NUMBER.fullmatch(value.strip()):
        return int(value.strip())
    return None


def positive_id(value) -> int | None:
    """The id in text a page sends ("12" in ?chat=12, "#gc-version-12"): ASCII digits only, no sign,
    from 1 to a database id's largest (2**63 - 1); None for anything else."""
    if not isinstance(value, str) or not 0 < len(value) <= 19 or not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if 0 < number < 2**63 else None


def parse_page(value) -> int:
    page = whole_number(value)
    if page is None or page < 1:
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
