"""The Account tab's API keys section: keys for /v1 (create with a name, shown once; list; revoke).

Built inside the Account tab (account.py); its callbacks re-check the session like every other
callback, and return their outputs by component.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ..accounts import keys
from ..errors import GemmaChatError
from .markup import as_literal
from .text import columns, language_of, text, translated

KEY_COLUMN_KEYS = ["col_name", "col_key", "col_created", "col_last_used"]
KEY_COLUMNS = columns("en", KEY_COLUMN_KEYS)


class ApiKeysSection:
    def __init__(self, app):
        self.app = app  # the ChatApp: its session checks and its error guard

    def _key_view(self, user_id: int, language: str = "en") -> tuple[pd.DataFrame, dict]:
        rows = keys.list_keys(user_id)
        never = text(language, "never")
        table = pd.DataFrame(
            [[k.label or "—", k.prefix + "…", f"{k.created_at:%Y-%m-%d %H:%M}",
              f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else never] for k in rows],
            columns=columns(language, KEY_COLUMN_KEYS),
        )
        choices = [(f"{k.label or text(language, 'unnamed_key')} ({k.prefix}…)", k.id) for k in rows]
        return table, gr.update(choices=choices, value=None)

    def show(self, request: gr.Request) -> dict:
        language = language_of(request)
        try:
            user = self.app.current_user(request)
            table, choices = self.app._guarded("account:list", self._key_view, user.id, language)
        except GemmaChatError as exc:
            return {self.message: f"⚠ {translated(language, exc)}"}
        return {self.table: table, self.revoke_choice: choices, self.message: "", self.shown_key: gr.update(value="", visible=False)}

    def create(self, request: gr.Request, label) -> dict:
        language = language_of(request)
        try:
            user = self.app.current_user(request)
            row, plaintext = self.app._guarded("account:create_key", keys.create_key, user.id, label)
            table, choices = self._key_view(user.id, language)
        except GemmaChatError as exc:
            return {self.message: f"⚠ {translated(language, exc)}"}
        return {
            self.shown_key: gr.update(value=plaintext, visible=True),
            self.message: text(language, "key_created"),
            self.table: table, self.revoke_choice: choices, self.label: "",
        }

    def revoke(self, request: gr.Request, key_id) -> dict:
        language = language_of(request)
        try:
            user = self.app.current_user(request)
            if not isinstance(key_id, int) or isinstance(key_id, bool):
                raise GemmaChatError("Choose a key to revoke.")
            row = self.app._guarded("account:revoke_key", keys.revoke_key, key_id, user_id=user.id)
            table, choices = self._key_view(user.id, language)
        except GemmaChatError as exc:
            return {self.message: f"⚠ {translated(language, exc)}"}
        return {self.message: text(language, "key_revoked", name=as_literal(row.label or row.prefix + "…")),
                self.table: table, self.revoke_choice: choices, self.shown_key: gr.update(value="", visible=False)}

    def build(self, tab: gr.Tab) -> None:
        """The section's components, inside the open Account `tab`; selecting the tab lists the keys."""
        t = self.app.i18n
        gr.Markdown(t("api_keys_intro"))
        with gr.Row():
            self.label = gr.Textbox(label=t("key_name"), max_lines=1, scale=3)
            create_button = gr.Button(t("create_api_key"), variant="primary", scale=1)
        self.shown_key = gr.Textbox(
            label=t("new_api_key"), interactive=False, visible=False, buttons=["copy"], elem_id="new-api-key"
        )
        self.message = gr.Markdown(elem_id="api-keys-message")
        self.table = gr.Dataframe(headers=KEY_COLUMNS, interactive=False, datatype="str")
        with gr.Row():
            self.revoke_choice = gr.Dropdown(label=t("key_to_revoke"), choices=[], scale=3)
            revoke_button = gr.Button(t("revoke"), variant="stop", scale=1)
        outputs = [self.table, self.revoke_choice, self.message, self.shown_key, self.label]
        tab.select(self.show, None, outputs, api_name=False)
        create_button.click(self.create, [self.label], outputs, api_name=False)
        revoke_button.click(self.revoke, [self.revoke_choice], outputs, api_name=False)


def build_api_keys_section(app, tab: gr.Tab) -> ApiKeysSection:
    section = ApiKeysSection(app)
    section.build(tab)
    return section
