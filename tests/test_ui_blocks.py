"""ui/blocks.py: a request's failure is answered as a popup Gradio does not print; a body that does
not fit its event is refused as the client's doing, a failure of the app's is stored with its id.

(tests/reliability/test_edge.py sends the same bodies to the running app and reads its stdout.)
"""

from __future__ import annotations

import asyncio

import gradio as gr
import pytest

from gemma_chat.store.db import ErrorEvent
from gemma_chat.ui.blocks import BODY_REFUSED, QuietBlocks


def unguarded_failure(text):
    raise RuntimeError("a callback outside the guard failed")


@pytest.fixture
def blocks():
    with QuietBlocks() as demo:
        box, chatbot, choice, shown = gr.Textbox(), gr.Chatbot(), gr.Dropdown(choices=["mini", "pro"]), gr.Textbox()
        gr.Button().click(lambda text, turns, tier: f"{tier}: {text} after {len(turns)}", [box, chatbot, choice], [shown])
        gr.Button().click(None, [box], [shown], js="(text) => text")  # no Python function
        gr.Button().click(unguarded_failure, [box], [shown])
        gr.Button().click(lambda text: ["one", "too few"], [box], [shown, box, choice])  # outputs Gradio cannot show
    return demo


def run(blocks, index: int, inputs):
    """The event as Gradio's routes run it; the popup it fails with, or None."""
    try:
        asyncio.run(blocks.process_api(index, inputs, None, None))
    except gr.Error as popup:
        return popup
    return None


@pytest.mark.parametrize(
    "index, inputs",
    [(0, []), (0, ["x", []]), (0, ["x", "two", "mini"]), (0, ["x", {"n": 2}, "mini"]), (1, ["x"]), (99, ["x"])],
    ids=["no values", "too few values", "text for the chat", "an object for the chat", "an event with no Python function",
         "no such event"],
)
def test_a_body_that_does_not_fit_its_event_is_refused_quietly_and_stored_nowhere(database, blocks, index, inputs):
    popup = run(blocks, index, inputs)
    assert popup is not None and not popup.print_exception and popup.message == BODY_REFUSED
    assert ErrorEvent.select().count() == 0


def test_a_choice_not_offered_keeps_gradio_s_message_and_is_not_printed(database, blocks):
    popup = run(blocks, 0, ["x", [], "ultra"])
    assert popup is not None and not popup.print_exception and "ultra" in popup.message
    assert ErrorEvent.select().count() == 0
    assert run(blocks, 0, ["x", [], "pro"]) is None  # the event itself runs


@pytest.mark.parametrize("index, where", [(2, "a callback outside the guard failed"), (3, "didn't return enough output values")])
def test_a_failure_of_the_app_s_own_is_stored_with_the_id_the_user_sees(database, blocks, index, where):
    popup = run(blocks, index, ["x"])
    assert popup is not None and not popup.print_exception
    (stored,) = ErrorEvent.select()
    assert popup.message == f"Something went wrong (error {stored.error_id})."
    assert where in stored.traceback
