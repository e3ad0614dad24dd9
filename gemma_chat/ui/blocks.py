"""The Blocks the app is built on: Gradio's, except that no request's failure prints a traceback.

Gradio prints the traceback of every event that fails with anything but a
gr.Error(print_exception=False) to stdout (traceback.print_exc in queueing.py and in routes.py's
run/predict). The callbacks already turn their own failures into such popups (common.py); what is
left fails in Gradio, around them, and `process_api` (the one method both routes call) sorts it:
- before the event's function ran (too few values, a value a component cannot read, event data that
  is not the event's, an event with no Python function): the body does not fit the event, the
  client's doing; a short message, and one line in the log file;
- in the event's function (one outside the guard) or in showing what it returned: the app's own
  error, logged with its traceback in the log file and the error table, shown with its id.
"""

from __future__ import annotations

import traceback

import gradio as gr

from ..errors import SOMETHING_WENT_WRONG
from ..ops.error_log import log_error, logger
from ..wording import Message
from .common import error_popup, shorten
from .text import language_of

BODY_REFUSED = "This request does not fit the page; reload the page."


class QuietBlocks(gr.Blocks):
    async def process_api(self, block_fn, inputs, state=None, request=None, *args, **kwargs):
        event = self.fns.get(block_fn) if isinstance(block_fn, int) else block_fn
        name = getattr(event, "api_name", None) or getattr(event, "name", None) or "event"
        try:
            return await super().process_api(block_fn, inputs, state, request, *args, **kwargs)
        except gr.Error as exc:
            if exc.print_exception:  # Gradio's own refusal of a value (a choice not offered): its short message stands
                logger.warning("event %s refused: %s", name, shorten(str(exc.message), 200))
                exc.print_exception = False
            raise
        except Exception as exc:  # noqa: BLE001 — every failure is answered here, never printed
            language = language_of(request[0] if isinstance(request, list) and request else request)
            if _ran(exc, getattr(event, "fn", None), gr.Blocks.postprocess_data):
                error_id = log_error(f"ui:{name}", exc)
                raise error_popup(language, Message(SOMETHING_WENT_WRONG, error_id=error_id)) from exc
            logger.warning("event %s refused: %s: %s", name, type(exc).__name__, shorten(str(exc), 200))
            raise error_popup(language, Message(BODY_REFUSED)) from None


def _ran(exc: BaseException, *functions) -> bool:
    """Did the failure happen inside one of these functions (a frame of theirs is in its traceback)?"""
    codes = {getattr(getattr(f, "__func__", f), "__code__", None) for f in functions} - {None}
    return any(frame.f_code in codes for frame, _ in traceback.walk_tb(exc.__traceback__))
