"""The sidebar: New chat, Import chat, Search chats (live, titles and messages), and the user's chats
newest first, grouped by day. One click opens a chat; each row's menu renames, exports or deletes it
(deleting asks first).

The list is HTML the server renders (titles escaped), its rows' menus those of row_menu.py: a click
sends "open:12" (or rename, export, delete) as one Gradio event, `chat_request`, whose callback
resolves the user from the cookie and reaches only that user's chats. A made-up id is "not found",
shown in the sidebar.
"""

from __future__ import annotations

import datetime as dt
import html

import gradio as gr

from ..chats import conversations, documents
from ..errors import GemmaChatError
from ..store.db import utcnow
from . import export
from .common import LIST_OUTPUTS, OPENED_CHAT_OUTPUTS, notice, owned, owned_by
from .markup import as_literal
from .row_menu import MAX_REQUEST_CHARS, menu_html
from .row_menu import parse_request as parse_row_request
from .text import language_of, text, translated

ACTIONS = ("open", "rename", "export_md", "export_json", "delete")  # what a row offers


def day_label(day: dt.date, today: dt.date, language: str) -> str:
    if day == today:
        return text(language, "day_today")
    if day == today - dt.timedelta(days=1):
        return text(language, "day_yesterday")
    return f"{day:%Y-%m-%d}"


def chat_list_html(rows: list[conversations.ChatListRow], open_id: int | None, language: str, searching: bool) -> str:
    """The chats, newest first, under a heading per day (UTC); the open one marked."""
    if not rows:
        return f'<p class="gc-empty">{html.escape(text(language, "no_chats_found" if searching else "no_chats_yet"))}</p>'
    today = utcnow().date()
    menu = {action: text(language, f"chat_menu_{action}") for action in ACTIONS if action != "open"}
    menu_label = text(language, "chat_menu")
    parts, current_day = [], None
    for row in rows:
        day = row.updated_at.date()
        if day != current_day:
            parts.append(f'<div class="gc-day">{html.escape(day_label(day, today, language))}</div>')
            current_day = day
        title = html.escape(row.title)
        marked = " gc-open" if row.id == open_id else ""
        parts.append(
            f'<div class="gc-chat{marked}"><a class="gc-chat-link" href="?chat={row.id}" data-action="open" '
            f'data-id="{row.id}" title="{title}">{title}</a>{menu_html(row.id, menu, menu_label)}</div>'
        )
    return "\n".join(parts)


def parse_request(value) -> tuple[str, int | None]:
    """("open", 12) from "open:12" (a nonce may follow), ("new", None) from "new:…" (Back to a page
    without ?chat=); ("", None) for anything else. A number no chat can have: that chat is not found."""
    if isinstance(value, str) and len(value) <= MAX_REQUEST_CHARS and value.partition(":")[0] == "new":
        return "new", None
    return parse_row_request(value, ACTIONS)


class ChatsTab:
    """The sidebar's callbacks (the class keeps its old name: ChatApp's parts are mixins)."""

    def chat_list(self, user_id: int, session_id: int, search, language: str) -> str:
        rows = conversations.list_chats(user_id, search)
        open_id = conversations.open_conversation_of(user_id, session_id)
        return chat_list_html(rows, open_id, language, isinstance(search, str) and bool(search.strip()))

    def _listing(self, found, search, language: str, message: str = "") -> dict:
        """The list as it is now, with `message` under it; a bad search (only a forged event sends
        one) lists every chat instead."""
        try:
            listing = self.chat_list(found.user.id, found.session_id, search, language)
        except GemmaChatError as exc:
            listing = self.chat_list(found.user.id, found.session_id, None, language)
            message = message or notice(translated(language, exc))
        return {
            "chat_list": listing, "sidebar_notice": message, "rename_row": gr.update(visible=False),
            "delete_row": gr.update(visible=False), "target_chat": owned(found.user.id, []),
        }

    def search_chats(self, request: gr.Request, search):
        """Typing in Search chats: the list narrows at once (titles and the user's messages)."""
        found = self.signed_in(request)
        return self._listing(found, search, language_of(request))

    def refresh_chat_list(self, request: gr.Request, search):
        """After a turn: a new chat joins the list, a used one moves to the top."""
        found = self.signed_in(request, touch=False)
        language = language_of(request)
        try:
            return {"chat_list": self.chat_list(found.user.id, found.session_id, search, language)}
        except GemmaChatError:
            return {"chat_list": self.chat_list(found.user.id, found.session_id, None, language)}

    def chat_request(self, request: gr.Request, value, search):
        """A click in the list: open a chat, or start renaming, exporting or deleting one."""
        found = self.signed_in(request)
        language = language_of(request)
        action, chat_id = parse_request(value)
        if action == "new":
            return self.new_chat_from_list(request, search)
        try:
            conversation = conversations.get_conversation(found.user.id, chat_id) if action else None
        except conversations.ConversationNotFoundError as exc:
            conversation, message = None, notice(translated(language, exc))
        else:
            message = "" if action else notice(text(language, "chat_request_unknown"))
        if conversation is None:
            return self._listing(found, search, language, message)
        if action == "open":
            conversations.set_open_conversation(found.user.id, found.session_id, conversation.id)
            return {**self._listing(found, search, language), **self.opened_chat(found, language), "tabs": gr.Tabs(selected="chat")}
        if action in ("export_md", "export_json"):
            exported = export.chat_file(found.user.id, conversation.id, action.removeprefix("export_"))
            return {**self._listing(found, search, language), "download": exported}
        outputs = {**self._listing(found, search, language), "target_chat": owned(found.user.id, [conversation.id])}
        if action == "rename":
            outputs.update(rename_row=gr.update(visible=True), rename_title=conversation.title)
        else:
            question = text(language, "delete_chat_question", title=as_literal(conversation.title))
            outputs.update(delete_row=gr.update(visible=True), delete_question=question)
        return outputs

    def _target(self, user_id: int, target) -> int | None:
        chosen = owned_by(user_id, target)
        return chosen[0] if chosen else None

    def rename_chat(self, request: gr.Request, target, title, search):
        found = self.signed_in(request)
        language = language_of(request)
        chat_id = self._target(found.user.id, target)
        if chat_id is None:
            return self._listing(found, search, language, notice(text(language, "choose_chat_first")))
        try:
            renamed = conversations.rename_conversation(found.user.id, chat_id, title)
        except GemmaChatError as exc:  # a title to fix: the box stays open, the reason under it
            return {"sidebar_notice": notice(translated(language, exc))}
        return self._listing(found, search, language, text(language, "chat_renamed", title=as_literal(renamed.title)))

    def delete_chat(self, request: gr.Request, target, search):
        """Hide the chat from its owner (confirmed first); what it cost stays on record."""
        found = self.signed_in(request)
        language = language_of(request)
        chat_id = self._target(found.user.id, target)
        if chat_id is None:
            return self._listing(found, search, language, notice(text(language, "choose_chat_first")))
        try:
            conversation = conversations.get_conversation(found.user.id, chat_id)
        except GemmaChatError as exc:
            return self._listing(found, search, language, notice(translated(language, exc)))
        was_open = conversations.open_conversation_of(found.user.id, found.session_id) == conversation.id
        conversations.delete_conversation(found.user.id, conversation.id)
        outputs = self._listing(found, search, language, text(language, "chat_deleted", title=as_literal(conversation.title)))
        if was_open:
            outputs.update(self.opened_chat(found, language))
        return outputs

    def cancel_chat_change(self, request: gr.Request, search):
        found = self.signed_in(request)
        return self._listing(found, search, language_of(request))

    def new_chat_from_list(self, request: gr.Request, search=None):
        """New chat: an empty chat (the user's default system prompt), the Chat tab, no ?chat= in the URL."""
        found = self.signed_in(request)
        conversations.set_open_conversation(found.user.id, found.session_id, None)
        language = language_of(request)
        return {**self._listing(found, search, language), **self.opened_chat(found, language), "tabs": gr.Tabs(selected="chat")}

    def import_chats(self, request: gr.Request, file_text, file_size, search, *, message_to: str = "sidebar_notice"):
        """A file chosen with Import (IMPORT_JS reads it in the browser): its chats join the list and
        the first opens. A file that cannot be imported is named beside the button that chose it
        (`message_to`), and nothing is created."""
        found = self.signed_in(request)
        language = language_of(request)
        size = export.file_size(file_size)
        if size is None:  # no file chosen
            return {}
        try:
            documents.check_size(size)
            imported = documents.import_chats(found.user.id, file_text, max_message_chars=self.settings.max_message_chars)
        except GemmaChatError as exc:
            refusal = notice(translated(language, exc.message))
            if message_to == "sidebar_notice":
                return self._listing(found, search, language, refusal)
            return {message_to: refusal}
        first = imported.chat_ids[0]
        conversations.set_open_conversation(found.user.id, found.session_id, first)
        if len(imported.chat_ids) == 1:
            title = as_literal(conversations.get_conversation(found.user.id, first).title)
            done = text(language, "chat_imported", title=title, n=imported.turns)
        else:
            done = text(language, "chats_imported", chats=len(imported.chat_ids), n=imported.turns)
        outputs = {
            **self._listing(found, search, language, done), **self.opened_chat(found, language), "tabs": gr.Tabs(selected="chat"),
        }
        if message_to != "sidebar_notice":  # the sidebar says it; an earlier refusal there is gone
            outputs[message_to] = ""
        return outputs

    def build_sidebar(self, t, c: dict) -> None:
        """The sidebar's components go into `c` by name; wire_sidebar wires their events."""
        with gr.Sidebar(open=True, width=280, visible=False, elem_id="chats-sidebar") as c["sidebar"]:
            c["chats_new_chat_button"] = gr.Button(t("new_chat"), variant="primary", elem_id="new-chat-button")
            c["import_chat_button"] = gr.Button(t("import_chat"), size="sm", elem_id="import-chat-button")
            c["chat_search"] = gr.Textbox(
                label=t("search_chats"), show_label=False, placeholder=t("search_chats"), max_lines=1, elem_id="chat-search",
            )
            c["sidebar_notice"] = gr.Markdown(elem_id="sidebar-notice")
            with gr.Group(visible=False, elem_id="rename-row") as c["rename_row"]:
                c["rename_title"] = gr.Textbox(label=t("chat_title"), max_lines=1, elem_id="rename-title")
                with gr.Row():
                    c["rename_save"] = gr.Button(t("rename"), variant="primary", size="sm", elem_id="rename-save")
                    c["rename_cancel"] = gr.Button(t("cancel"), size="sm", elem_id="rename-cancel")
            with gr.Group(visible=False, elem_id="delete-row") as c["delete_row"]:
                c["delete_question"] = gr.Markdown(elem_id="delete-question")
                with gr.Row():
                    c["delete_confirm"] = gr.Button(t("delete"), variant="stop", size="sm", elem_id="delete-confirm")
                    c["delete_cancel"] = gr.Button(t("cancel"), size="sm", elem_id="delete-cancel")
            c["chat_list"] = gr.HTML(elem_id="chat-list", js_on_load=None)  # its clicks: PAGE_JS (session.py)
            # Hidden by the page's style (an invisible component is not on the page): the list's clicks
            # reach the server through them, and an export comes back through `download`.
            c["chat_request"] = gr.Textbox(elem_id="chat-request", elem_classes=["gc-hidden"], container=False)
            c["chat_request_button"] = gr.Button("open", elem_id="chat-request-button", elem_classes=["gc-hidden"])
            c["download"] = gr.Textbox(elem_id="chat-download", elem_classes=["gc-hidden"], container=False)
            # An imported file's text and size come in the event's inputs (IMPORT_JS), never in these
            # boxes' values: nothing is uploaded to where Gradio keeps files.
            c["import_text"] = gr.Textbox(elem_id="import-text", elem_classes=["gc-hidden"], container=False)
            c["import_size"] = gr.Textbox(elem_id="import-size", elem_classes=["gc-hidden"], container=False)
            c["target_chat"] = gr.State([])

    def wire_sidebar(self, c: dict) -> list:
        """Wires the sidebar's events; returns those that change the open chat."""
        wire = self.wire
        opened_outputs = OPENED_CHAT_OUTPUTS
        wire(
            c["chat_search"].input, self.search_chats, ["chat_search"], LIST_OUTPUTS, api_name="search_chats",
            trigger_mode="always_last", show_progress="hidden",
        )
        requested = wire(
            c["chat_request_button"].click, self.chat_request, ["chat_request", "chat_search"],
            opened_outputs + ["rename_title", "delete_question", "download"], api_name="chat_request", show_progress="hidden",
        )
        c["download"].change(None, [c["download"]], None, js=DOWNLOAD_JS)
        for trigger in (c["rename_save"].click, c["rename_title"].submit):
            wire(trigger, self.rename_chat, ["target_chat", "rename_title", "chat_search"], LIST_OUTPUTS, api_name=False)
        deleted = wire(
            c["delete_confirm"].click, self.delete_chat, ["target_chat", "chat_search"], opened_outputs, api_name="delete_chat",
        )
        for button in ("rename_cancel", "delete_cancel"):
            wire(c[button].click, self.cancel_chat_change, ["chat_search"], LIST_OUTPUTS, api_name=False)
        new_chat = wire(
            c["chats_new_chat_button"].click, self.new_chat_from_list, ["chat_search"], opened_outputs, api_name="new_chat",
        )
        imported = wire(
            c["import_chat_button"].click, self.import_chats, export.IMPORT_INPUTS, opened_outputs, api_name=False,
            js=export.IMPORT_JS, show_progress="hidden",
        )
        return [requested, deleted, new_chat, imported]


# An export arrives as {"name": …, "type": …, "text": …} in the hidden `download` box: saved as a file
# by the browser, never written where Gradio would serve it by URL.
DOWNLOAD_JS = """
(payload) => {
  if (!payload) return;
  let file;
  try { file = JSON.parse(payload); } catch (error) { return; }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([file.text], {type: file.type}));
  link.download = file.name;
  document.body.appendChild(link);
  link.click();
  setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
}
"""
