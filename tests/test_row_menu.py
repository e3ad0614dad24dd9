"""A row's menu in a list the server draws (ui/row_menu.py): the request a click sends is parsed to one
of the list's actions and an id, or to nothing; the menu's markup escapes whatever it is given."""

from __future__ import annotations

import html

import pytest

from gemma_chat.ui.row_menu import menu_html, parse_request

ACTIONS = ("grant", "disable")


@pytest.mark.parametrize(
    "value, parsed",
    [
        ("disable:12", ("disable", 12)), ("disable:12:7", ("disable", 12)), ("grant:1:x:y", ("grant", 1)),
        ("disable:0", ("disable", None)), ("disable:9223372036854775808", ("disable", None)),  # no row has it: not found
        ("disable:9223372036854775807", ("disable", 2**63 - 1)),
        ("delete:12", ("", None)), ("DISABLE:12", ("", None)), ("disable:", ("", None)), ("disable", ("", None)),
        ("disable:-1", ("", None)), ("disable:+1", ("", None)), ("disable: 1", ("", None)), ("disable:١٢", ("", None)),
        ("disable:1e3", ("", None)), (":12", ("", None)), ("", ("", None)), ("disable:" + "1" * 57, ("", None)),
        (None, ("", None)), (12, ("", None)), (["disable", 12], ("", None)), (b"disable:12", ("", None)),
    ],
)
def test_a_request_is_one_of_the_list_s_actions_with_an_id_or_nothing(value, parsed):
    assert parse_request(value, ACTIONS) == parsed


def test_the_menu_escapes_its_labels_and_name():
    hostile = '<img src=x onerror="alert(1)">'
    shown = menu_html(7, {"disable": hostile, '"><b>': "x"}, f"Actions for {hostile}")
    assert "<img" not in shown and "<b>" not in shown
    assert f'aria-label="Actions for {html.escape(hostile)}"' in shown
    assert f'data-action="disable" data-id="7">{html.escape(hostile)}</button>' in shown
