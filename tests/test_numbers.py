"""One whole-number parser for credits, grants and pages: what a person types means the same number everywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemma_chat.accounts.admin import parse_grant
from gemma_chat.billing.ledger import parse_credits
from gemma_chat.errors import ValidationError
from gemma_chat.numbers import neighbour_page, page_bounds, parse_page, positive_id, whole_number


@given(st.integers(min_value=-(10**12) + 1, max_value=10**12 - 1), st.sampled_from(["", " ", "\t"]), st.booleans())
def test_typed_numbers_read_as_the_number_they_show(number, padding, plus):
    typed = f"{padding}{'+' if plus and number >= 0 else ''}{number}{padding}"
    assert whole_number(typed) == number
    assert whole_number(float(number)) == number


@pytest.mark.parametrize("value", [True, False, 2.5, float("nan"), float("inf"), "five", "+-5", "-+5", "1e3", "1_000",
                                   "٣", "", "  ", "1" * 13, None, [1], {"a": 1}, b"5"])
def test_anything_else_is_not_a_number(value):
    assert whole_number(value) is None


@pytest.mark.parametrize("typed", ["+-5", "--5", "٣", "1_000"])
def test_top_ups_grants_and_pages_refuse_signs_and_digits_of_other_scripts_with_a_message(typed):
    """"+-5" passed the old checks (lstrip of the signs) and then int() raised: a traceback, not a message."""
    with pytest.raises(ValidationError, match="whole number"):
        parse_credits(typed, maximum=1000)
    with pytest.raises(ValidationError, match="whole number"):
        parse_grant(typed)
    with pytest.raises(ValidationError, match="whole number"):
        parse_page(typed)


def test_a_page_past_the_end_shows_the_last_and_a_bad_page_means_the_first():
    assert page_bounds(9, total=41, page_size=20) == (3, 3)
    assert page_bounds(1, total=0, page_size=20) == (1, 1)
    assert neighbour_page("nonsense", +1) == 2
    assert neighbour_page(" 3 ", -1) == 2
    assert neighbour_page(1, -1) == 1


@pytest.mark.parametrize("value, expected", [("12", 12), ("9223372036854775807", 2**63 - 1), ("9223372036854775808", None),
                                             ("0", None), ("+12", None), (" 12", None), ("١٢", None), ("", None), (12, None)])
def test_an_id_from_a_page_is_plain_digits_within_a_database_id(value, expected):
    assert positive_id(value) == expected
