"""Edit last message against anything a client can send (issue 11: ≥500 examples each), with the
checks of test_ui_replace_fuzz.py (`ChatPages`): Edit puts the last message back in the box (again:
cancel), the next Send replaces that turn only while it is still the chat's last, the button's label
follows (and whether it can be pressed), a refused edited message leaves the chat and the balance as they were and the edit waiting.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from test_ui_replace_fuzz import FUZZ, a_page_doing, pages, starts  # noqa: F401 (pages: the fixture)

pytestmark = pytest.mark.slow


def test_edit_last_message_takes_any_input_and_replaces_only_the_turn_it_put_back(pages):
    core = ["edit", "send", "actions"]

    @FUZZ
    @given(start=starts, steps=a_page_doing(core))
    def example(start, steps):
        pages.run_page(start, steps)

    example()
    pages.check_totals(core)
    assert pages.seen["edited"] >= 60, pages.seen  # an edit that still applied when sent
