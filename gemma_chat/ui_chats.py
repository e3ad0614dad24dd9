"""The Chats tab: the user's chats, newest first, to open, rename, delete and search.

A mixin of ChatApp (ui.py): every callback resolves the user from the request's session cookie,
and the services (conversations.py) touch only that user's chats. Callbacks return their outputs
by name; `ChatApp.named` maps the names to the components built here.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from . import conversations
from .history import neighbour_page
from .markup import as_literal
from .ui_text import columns, language_of, text

CHATS_COLUMN_KEYS = ["col_chat", "col_last_used", "col_turns"]


class ChatsTab:
    CHATS_COLUMNS = columns("en", CHATS_COLUMN_KEYS)

    def chats_page(self, request: gr.Request, page, search):
        """The list: one page of the user's chats, matching `search` when given."""
        user = self.current_user(request)
        language = language_of(request)
        result = conversations.list_conversations(user.id, page or 1, self.settings.history_page_size, search)
        table = pd.DataFrame(
            [[row.title, f"{row.updated_at:%Y-%m-%d %H:%M}", row.turns] for row in result.rows],
            columns=columns(language, CHATS_COLUMN_KEYS),
        )
        if result.total:
            label_key = "page_of"
        else:
            label_key = "chats_none_found" if isinstance(search, str) and search.strip() else "chats_empty"
        label = text(language, label_key, page=result.page, pages=result.total_pages)
        return {
            "chats_table": table,
            "chats_label": label,
            "chats_page_state": result.page,
            "chats_ids": self.owned(user.id, [row.id for row in result.rows]),
            "selected_chat": self.owned(user.id, []),
            "chat_title": "",
            "chats_message": "",
        }

    def chats_step(self, request: gr.Request, page, search, step: int):
        return self.chats_page(request, neighbour_page(page, step), search)

    def chats_previous(self, request: gr.Request, page, search):
        return self.chats_step(request, page, search, -1)

    def chats_next(self, request: gr.Request, page, search):
        return self.chats_step(request, page, search, +1)

    def chats_search(self, request: gr.Request, search):
        return self.chats_page(request, 1, search)

    def select_chat(self, request: gr.Request, ids, event: gr.SelectData):
        """A click on a row selects that chat (its title goes to the rename box)."""
        user = self.current_user(request)
        ids = self.owned_by(user.id, ids)
        index = event.index  # [row, column] from a table click; anything from a forged event
        row = index[0] if isinstance(index, (list, tuple)) and index else index
        if not isinstance(row, int) or not 0 <= row < len(ids):
            return {"selected_chat": self.owned(user.id, []), "chat_title": ""}
        conversation = conversations.get_conversation(user.id, ids[row])
        return {"selected_chat": self.owned(user.id, [conversation.id]), "chat_title": conversation.title}

    def _selected(self, user_id: int, selected) -> int:
        chosen = self.owned_by(user_id, selected)
        if not chosen:
            raise conversations.ConversationNotFoundError("Choose a chat in the list first.")
        return chosen[0]

    def open_chat(self, request: gr.Request, selected):
        """Open the selected chat in the Chat tab: its turns, and the next message continues it."""
        found = self.signed_in(request)
        conversation_id = self._selected(found.user.id, selected)
        conversations.set_open_conversation(found.user.id, found.session_id, conversation_id)
        shown, context = self.open_chat_view(found.user.id, found.session_id, language_of(request))
        return {"chatbot": shown, "turns": context, "tabs": gr.Tabs(selected="chat")}

    def rename_chat(self, request: gr.Request, page, search, selected, title):
        user = self.current_user(request)
        renamed = conversations.rename_conversation(user.id, self._selected(user.id, selected), title)
        outputs = self._listing_after_change(request, page, search)
        return {**outputs, "chats_message": text(language_of(request), "chat_renamed", title=as_literal(renamed.title))}

    def delete_chat(self, request: gr.Request, page, search, selected):
        """Hide the chat from its owner; what it cost stays on record."""
        found = self.signed_in(request)
        conversation = conversations.get_conversation(found.user.id, self._selected(found.user.id, selected))
        was_open = conversations.open_conversation_of(found.user.id, found.session_id) == conversation.id
        conversations.delete_conversation(found.user.id, conversation.id)
        outputs = self._listing_after_change(request, page, search)
        outputs["chats_message"] = text(language_of(request), "chat_deleted", title=as_literal(conversation.title))
        if was_open:
            outputs.update(chatbot=[], turns=[])
        else:
            outputs.update(chatbot=gr.update(), turns=gr.update())
        return outputs

    def _listing_after_change(self, request: gr.Request, page, search):
        """The list after a rename or delete that succeeded: a bad page or search (only a forged
        event sends one) shows the first page rather than report the done change as a failure."""
        try:
            return self.chats_page(request, page, search)
        except conversations.ValidationError:
            return self.chats_page(request, 1, "")

    def build_chats_tab(self, t, c: dict) -> None:
        """The tab's components go into `c` by name; ChatApp.build wires their events."""
        with gr.Tab(t("chats"), id="chats") as c["chats_tab"]:
            with gr.Row():
                c["chats_search"] = gr.Textbox(label=t("search_chats"), max_lines=1, scale=4)
                c["chats_search_button"] = gr.Button(t("search"), scale=1)
            c["chats_table"] = gr.Dataframe(
                headers=self.CHATS_COLUMNS, interactive=False, wrap=True, datatype="str", elem_id="chats-table"
            )
            with gr.Row():
                c["chats_previous"] = gr.Button(t("previous"), size="sm")
                c["chats_label"] = gr.Markdown(t("page_1_of_1"))
                c["chats_next"] = gr.Button(t("next"), size="sm")
            c["chat_title"] = gr.Textbox(label=t("chat_title"), max_lines=1)
            with gr.Row():
                c["open_chat_button"] = gr.Button(t("open_chat"), variant="primary")
                c["rename_chat_button"] = gr.Button(t("rename"))
                c["delete_chat_button"] = gr.Button(t("delete"), variant="stop")
                c["chats_new_chat_button"] = gr.Button(t("new_chat"))
            c["chats_message"] = gr.Markdown(elem_id="chats-message")
            c["chats_page_state"] = gr.State(1)
            c["chats_ids"] = gr.State([])
            c["selected_chat"] = gr.State([])

    def wire_chats_tab(self, c: dict):
        """Wires the tab's events; returns Open's, which ChatApp.build chains after."""
        listing = ["chats_table", "chats_label", "chats_page_state", "chats_ids", "selected_chat", "chat_title", "chats_message"]
        wire = self.wire
        wire(c["chats_tab"].select, self.chats_page, ["chats_page_state", "chats_search"], listing, api_name="chats")
        wire(c["chats_search_button"].click, self.chats_search, ["chats_search"], listing, api_name="search_chats")
        wire(c["chats_search"].submit, self.chats_search, ["chats_search"], listing, api_name=False)
        wire(c["chats_previous"].click, self.chats_previous, ["chats_page_state", "chats_search"], listing, api_name=False)
        wire(c["chats_next"].click, self.chats_next, ["chats_page_state", "chats_search"], listing, api_name=False)
        wire(c["chats_table"].select, self.select_chat, ["chats_ids"], ["selected_chat", "chat_title"], api_name=False)
        opened = wire(
            c["open_chat_button"].click, self.open_chat, ["selected_chat"], ["chatbot", "turns", "tabs"], api_name="open_chat"
        )
        wire(
            c["rename_chat_button"].click, self.rename_chat, ["chats_page_state", "chats_search", "selected_chat", "chat_title"],
            listing, api_name="rename_chat",
        )
        wire(
            c["delete_chat_button"].click, self.delete_chat, ["chats_page_state", "chats_search", "selected_chat"],
            listing + ["chatbot", "turns"], api_name="delete_chat",
        )
        return opened
