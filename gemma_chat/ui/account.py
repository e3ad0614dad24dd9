"""The Account tab: the system prompt new chats start with, all of one's chats as one file (and such a
file imported back: the sidebar's Import, with its refusals shown here), change one's own password (the other signed-in browsers are signed out), and the API keys section (api_keys.py).

A mixin of ChatApp (app.py), like the Chats tab: the user comes from the request's session cookie.
"""

from __future__ import annotations

import gradio as gr

from ..accounts import auth
from ..chats import conversations
from ..errors import GemmaChatError
from . import export
from .api_keys import build_api_keys_section
from .common import OPENED_CHAT_OUTPUTS
from .text import language_of, text, translated


class AccountTab:
    def change_password(self, request: gr.Request, current, new):
        cleared = {"current_password": "", "new_password": ""}
        language = language_of(request)
        try:
            found = self.signed_in(request)
            ended = self._guarded(
                "change_password", auth.change_own_password, self.settings, found.user.id, current, new,
                keep_session_id=found.session_id,
            )
        except GemmaChatError as exc:  # shown under the form; the boxes are cleared either way
            return {**cleared, "account_message": f"⚠ {translated(language, exc)}"}
        message = text(language, "password_changed", n=ended) if ended else text(language, "password_changed_alone")
        return {**cleared, "account_message": message}

    def save_default_system_prompt(self, request: gr.Request, system_prompt):
        """The system prompt new chats start with (each chat keeps its own, changed in its settings)."""
        language = language_of(request)
        found = self.signed_in(request)
        try:
            saved = conversations.set_default_system_prompt(found.user.id, system_prompt)
        except GemmaChatError as exc:
            return {"default_prompt_message": f"⚠ {translated(language, exc)}"}
        return {"default_system_prompt": saved, "default_prompt_message": text(language, "default_prompt_saved")}

    def export_all_chats(self, request: gr.Request):
        """All of the user's chats as one JSON file, saved by the browser (sidebar.py's DOWNLOAD_JS)."""
        found = self.signed_in(request)
        return {"download": export.all_chats_file(found.user.id)}

    def import_chats_from_account(self, request: gr.Request, file_text, file_size, search):
        """Import chats (JSON): as the sidebar's Import chat, with a refusal shown under the button."""
        return self.import_chats(request, file_text, file_size, search, message_to="import_message")

    def build_account_tab(self, t, c: dict) -> None:
        with gr.Tab(t("account"), id="account") as tab:
            c["default_system_prompt"] = gr.Textbox(
                label=t("default_system_prompt"), info=t("default_system_prompt_info"), lines=2, max_lines=8,
                elem_id="default-system-prompt",
            )
            c["save_default_prompt_button"] = gr.Button(t("save"), size="sm", elem_id="save-default-prompt")
            c["default_prompt_message"] = gr.Markdown(elem_id="default-prompt-message")
            with gr.Row():
                c["export_all_button"] = gr.Button(t("export_all_chats"), size="sm", elem_id="export-all-chats")
                c["import_chats_button"] = gr.Button(t("import_chats"), size="sm", elem_id="import-chats")
            c["import_message"] = gr.Markdown(elem_id="import-message")
            c["current_password"] = gr.Textbox(label=t("current_password"), type="password", max_lines=1)
            c["new_password"] = gr.Textbox(label=t("new_password"), type="password", max_lines=1)
            c["change_password_button"] = gr.Button(t("change_password"), variant="primary")
            c["account_message"] = gr.Markdown(elem_id="account-message")
            self.api_keys = build_api_keys_section(self, tab)

    def wire_account_tab(self, c: dict) -> list:
        """Wires the tab's events; returns the one that changes the open chat (Import)."""
        self.wire(
            c["save_default_prompt_button"].click, self.save_default_system_prompt, ["default_system_prompt"],
            ["default_system_prompt", "default_prompt_message"], api_name="save_default_system_prompt",
        )
        self.wire(c["export_all_button"].click, self.export_all_chats, [], ["download"], api_name=False)
        imported = self.wire(
            c["import_chats_button"].click, self.import_chats_from_account, export.IMPORT_INPUTS,
            OPENED_CHAT_OUTPUTS + ["import_message"], api_name=False, js=export.IMPORT_JS, show_progress="hidden",
        )
        fields = ["current_password", "new_password"]
        # Refusals clear the password boxes too: nothing typed into them lingers on the page.
        self.wire(
            c["change_password_button"].click, self.change_password, fields, fields + ["account_message"],
            api_name="change_password", api_visibility="undocumented",
        )
        return [imported]
