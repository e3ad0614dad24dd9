"""Lists the server draws as HTML whose rows each have a menu of actions (the sidebar's chats, the
Admin tab's users): the menu's markup, and the request a click in it sends back.

A click runs in the browser (PAGE_JS in session.py): the row's `data-action` and `data-id` become
"action:ID:nonce" in the list's hidden request box, and its hidden button is pressed. One Gradio event
per list, whose callback parses the request here and re-checks everything it names: the page is
never trusted to have offered only what applies.
"""

from __future__ import annotations

import html

from ..numbers import positive_id

MAX_REQUEST_CHARS = 64  # "rename:123:7": anything longer is not one of ours


def parse_request(value, actions) -> tuple[str, int | None]:
    """("open", 12) from "open:12" (a nonce may follow) when "open" is one of `actions`; the action
    with None for a number no row can have; ("", None) for anything else."""
    if not isinstance(value, str) or len(value) > MAX_REQUEST_CHARS:
        return "", None
    action, _, rest = value.partition(":")
    number = rest.split(":", 1)[0]
    if action not in actions or not (number.isascii() and number.isdigit()):
        return "", None
    return action, positive_id(number)


def menu_html(row_id: int, labels: dict[str, str], menu_label: str) -> str:
    """A row's "⋯" menu: one button per action (labels are plain text, escaped here). A <details> opens
    from the keyboard too (Tab to it, Enter); PAGE_JS closes it on Escape or a click elsewhere."""
    buttons = "".join(
        f'<button type="button" data-action="{html.escape(action)}" data-id="{row_id}">{html.escape(label)}</button>'
        for action, label in labels.items()
    )
    return (
        f'<details class="gc-menu"><summary aria-label="{html.escape(menu_label)}" title="{html.escape(menu_label)}">⋯</summary>'
        f"<div>{buttons}</div></details>"
    )
