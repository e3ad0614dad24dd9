"""Paging through an answer's versions (issue 19): ‹ and › under an answer that replaced earlier
ones show the version beside it in place, prompt, answer and footer. Paging reads, never charges.

The arrows are links in the answer's footer (transcript.py version_bar); a click on one, or Enter,
runs in the browser (PAGE_JS in session.py), which puts "#gc-version-12" into the hidden
`version_request` box and presses its hidden button: one Gradio event, whose callback resolves the
user from the cookie and shows only versions of that user's open chat. Which version each answer
shows is the page's own (`shown_versions`, tagged with its owner): the latest after a reload, after
opening a chat, and once a turn is replaced; the model's context is always the latest.
"""

from __future__ import annotations

import gradio as gr

from ..chats import conversations, versions
from ..numbers import positive_id
from .common import notice
from .text import language_of, text
from .transcript import VERSION_LINK, chat_messages

MAX_REQUEST_CHARS = 64  # "#gc-version-123:4": anything longer is not one of ours
VERSION_OUTPUTS = ["chatbot", "shown_versions", "chat_notice"]


def parse_version_request(value) -> int | None:
    """12 from "#gc-version-12" (a nonce may follow after ":"); None for anything else."""
    if not isinstance(value, str) or len(value) > MAX_REQUEST_CHARS or not value.startswith(VERSION_LINK):
        return None
    return positive_id(value[len(VERSION_LINK):].split(":", 1)[0])


class VersionsPart:
    """The version arrows' one event."""

    def show_version(self, request: gr.Request, value, chosen):
        """Show the version a ‹ or › names in place of the answer it belongs to; the others as they were."""
        found = self.signed_in(request)
        language = language_of(request)
        if self._answering.get(found.session_id):  # the streaming answer would draw over it
            return {"chat_notice": notice(text(language, "wait_for_answer"))}
        version_id = parse_version_request(value)
        open_id = conversations.open_conversation_of(found.user.id, found.session_id)
        if version_id is None or open_id is None:
            return {"chat_notice": notice(text(language, "version_not_found"))}
        before = [v for v in self.owned_by(found.user.id, chosen) if isinstance(v, int) and not isinstance(v, bool)]
        shown = versions.shown_turns(found.user.id, open_id, before + [version_id])
        if not any(version_id in each.version_ids and not each.turn.imported for each in shown):  # another chat's, or a made-up id
            return {"chat_notice": notice(text(language, "version_not_found"))}
        earlier = [each.turn.id for each in shown if each.position < len(each.version_ids)]
        return {
            "chatbot": chat_messages(shown, language), "shown_versions": self.owned(found.user.id, earlier),
            "chat_notice": "",
        }

    def build_versions(self, t, c: dict) -> None:
        # Hidden by the page's style, not by visible=False (an invisible component is not on the page).
        c["shown_versions"] = gr.State([])
        c["version_request"] = gr.Textbox(elem_id="version-request", elem_classes=["gc-hidden"], container=False)
        c["version_request_button"] = gr.Button("version", elem_id="version-request-button", elem_classes=["gc-hidden"])

    def wire_versions(self, c: dict) -> None:
        self.wire(
            c["version_request_button"].click, self.show_version, ["version_request", "shown_versions"], VERSION_OUTPUTS,
            api_name="show_version", show_progress="hidden",
        )
