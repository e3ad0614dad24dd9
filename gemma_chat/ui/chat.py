"""The chat: the transcript, the composer (model, message, Send, Stop), and the actions on the last
turn (Regenerate, Edit last message). One turn runs through chat.run_turn, as the API's do.

The chat shown and the context the model sees always come from the server (the session's open
chat, conversations.py), never from what the page sends.
"""

from __future__ import annotations

import threading
import time

import gradio as gr

from .. import chat, conversations, sessions
from ..error_log import log_error
from ..errors import GemmaChatError
from .common import balance_text, error_popup, popup, session_token, shows_errors, warn
from .markup import as_markdown
from .text import language_of, text, translated

# At most this often a streaming answer is re-sent: every update costs the server a full chatbot
# diff and SSE message, on the cores the model decodes with (bench/http.py measures it).
STREAM_INTERVAL_S = 0.05


def as_text(text: str) -> str:
    """A prompt or answer for the Chatbot: its markdown renders, its HTML shows as text (markup.py)."""
    return as_markdown(text)


def turn_figures(update: chat.TurnUpdate, language: str = "en") -> str:
    """"24 tokens · 41.3 tokens/s · 0.6 s" for a finished answer; empty when the model gave no figures."""
    if not update.completion_tokens or not update.duration_ms:
        return ""
    seconds = update.duration_ms / 1000
    return text(
        language, "turn_figures", tokens=update.completion_tokens, speed=f"{update.completion_tokens / seconds:.1f}",
        seconds=f"{seconds:.1f}",
    )


def stored_bubble(turn: conversations.Turn, language: str = "en") -> str:
    """A turn of a reopened chat, with the footer it had when it was answered."""
    parts = [turn.answer] if turn.answer else []
    if turn.status == "stopped":
        parts.append(text(language, "answer_stopped"))
    elif turn.status in ("error", "interrupted"):
        parts.append(text(language, "answer_failed"))
    elif turn.status == "pending":
        parts.append("…")
    footer = text(language, "answer_footer", model=turn.model_name, credits=turn.credits_charged)
    figures = turn_figures(
        chat.TurnUpdate("ok", completion_tokens=turn.completion_tokens, duration_ms=turn.duration_ms), language
    )
    return as_text("\n\n".join(parts + [f"{figures}\n{footer}" if figures else footer]))


def chat_messages(turns: list[conversations.Turn], language: str = "en") -> list[dict]:
    messages = []
    for turn in turns:
        messages += [
            {"role": "user", "content": as_text(turn.prompt)}, {"role": "assistant", "content": stored_bubble(turn, language)}
        ]
    return messages


class ChatPart:
    """Sending, streaming, stopping, and replacing the last turn."""

    def send(self, request: gr.Request, tier, message, chatbot, turns):
        """Stream one answer into the chat; the balance follows.

        After Edit last message, the message replaces the chat's last turn (a new charge).
        """
        found = self._signed_in_for_chat(request)
        user = found.user
        open_id = conversations.open_conversation_of(user.id, found.session_id)
        editing = self._editing.pop(found.session_id, None)
        replaced = editing[1] if self._edit_applies(user.id, open_id, editing) else None
        # The page's chatbot is only shown back; anything but a list of messages (a forged event) starts it afresh.
        shown = list(chatbot) if isinstance(chatbot, list) else []
        answered = yield from self._answer(found, tier, message, shown, open_id, replaced, language_of(request))
        if not answered:
            self._editing[found.session_id] = editing  # refused: still editing, nothing changed

    def regenerate(self, request: gr.Request, tier):
        """Answer the chat's last message again, replacing its answer (a new charge)."""
        found = self._signed_in_for_chat(request)
        open_id = conversations.open_conversation_of(found.user.id, found.session_id)
        last = conversations.last_turn(found.user.id, open_id) if open_id is not None else None
        language = language_of(request)
        if last is None:
            yield self._refused(language, text(language, "no_answer_to_regenerate"))
            return
        yield from self._answer(found, tier, last.prompt, None, open_id, last.id, language)

    @staticmethod
    def _refused(language: str, message: str) -> tuple:
        """A Regenerate or edit that cannot run: a warning popup, and the chat, box and balance as they were.

        (An error popup would also mark every output of the event as failed.)
        """
        warn(language, message)
        return (gr.update(),) * 4

    def _signed_in_for_chat(self, request) -> sessions.SignedIn:
        try:
            return self.signed_in(request)
        except GemmaChatError as exc:
            raise popup(request, exc) from None

    @staticmethod
    def _edit_applies(user_id: int, open_id: int | None, editing: tuple[int, int] | None) -> bool:
        """An edit still replaces its turn while that is the last turn of the open chat."""
        if editing is None or open_id is None or editing[0] != open_id:
            return False
        last = conversations.last_turn(user_id, open_id)
        return last is not None and last.id == editing[1]

    def _answer(self, found: sessions.SignedIn, tier, message, chatbot: list | None, open_id, replaces_id, language: str):
        """Run one turn and stream it: (chatbot, message box, balance, context) for each update.

        A replacement (`replaces_id`) is shown in place of the turn it replaces, and refused
        (insufficient credits, an answer still streaming) with a popup that leaves the chat as it was.
        Returns False when a replacement was refused. Messages are in `language`.
        """
        user = found.user
        if replaces_id is not None and self._answering.get(found.session_id):
            yield self._refused(language, text(language, "wait_for_answer"))
            return False
        # The chat and the context the model sees come from the server (the session's open chat),
        # never from the page: a page's State or chatbot cannot put words in another turn's mouth.
        box = gr.update() if chatbot is None else ""  # Regenerate leaves a draft in the box alone
        if open_id is None:
            earlier = []
        elif replaces_id is None:
            earlier = conversations.conversation_turns(user.id, open_id, limit=conversations.CONTEXT_TURNS)
        else:  # the whole chat is shown again, without the turn being replaced
            earlier = [turn for turn in conversations.conversation_turns(user.id, open_id) if turn.id != replaces_id]
            chatbot = chat_messages(earlier, language)
        context = conversations.context_of(earlier[-conversations.CONTEXT_TURNS:])
        shown = chatbot + [{"role": "user", "content": as_text(message if isinstance(message, str) else "")}]
        stop = self._stop_events.setdefault(found.session_id, threading.Event())
        stop.clear()
        update = None
        sent_text_at = None  # the first text goes out at once, later text at most every STREAM_INTERVAL_S
        turn = chat.run_turn(
            self.settings, self.engine, user.id, tier, message, context, stop=stop,
            conversation_id=open_id, new_conversation=open_id is None, replaces_id=replaces_id,
        )
        with self._answering_lock:
            self._answering[found.session_id] = self._answering.get(found.session_id, 0) + 1
        try:
            for update in turn:
                if open_id is None and update.conversation_id is not None:
                    open_id = update.conversation_id  # this turn started a chat: the session keeps it open
                    conversations.set_open_conversation(user.id, found.session_id, open_id)
                if replaces_id is not None and update.status in ("rejected", "refused", "busy"):
                    yield self._refused(language, translated(language, update.message))
                    return False
                if update.status == "rejected":  # the message box keeps its text
                    raise error_popup(language, update.message)
                if update.status == "streaming":
                    now = time.monotonic()
                    if sent_text_at is not None and now - sent_text_at < STREAM_INTERVAL_S:
                        continue  # more text, or the final update, follows
                    sent_text_at = now
                yield shown + [{"role": "assistant", "content": self._bubble(update, language)}], box, gr.update(), context
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 — run_turn settles its own hold; this is the UI's failure
            raise error_popup(language, f"Something went wrong (error {log_error('ui:send', exc, user_id=user.id)}).") from None
        finally:
            with self._answering_lock:
                self._answering[found.session_id] -= 1
                if not self._answering[found.session_id]:
                    del self._answering[found.session_id]
        if update is not None and update.status in ("ok", "stopped") and update.answer:
            context = context + [(message.strip(), update.answer)]
        yield shown + [{"role": "assistant", "content": self._bubble(update, language)}], box, balance_text(user.id, language), context
        return True

    def edit_last(self, request: gr.Request):
        """Put the chat's last message back in the box: the next Send replaces it. Again: cancel."""
        found = self.signed_in(request)
        language = language_of(request)
        if self._editing.pop(found.session_id, None) is not None:
            return {"edit_button": text(language, "edit_last_message")}
        if self._answering.get(found.session_id):
            warn(language, text(language, "wait_for_answer"))  # a warning: an error would mark the message box as failed
            return {}
        open_id = conversations.open_conversation_of(found.user.id, found.session_id)
        last = conversations.last_turn(found.user.id, open_id) if open_id is not None else None
        if last is None:
            warn(language, text(language, "no_message_to_edit"))
            return {}
        self._editing[found.session_id] = (open_id, last.id)
        return {"message": last.prompt, "edit_button": text(language, "cancel_edit")}

    def edit_state(self, request: gr.Request):
        """The Edit button's label after the chat changed: an edit ends with its Send or another chat."""
        found = self.signed_in(request, touch=False)
        open_id = conversations.open_conversation_of(found.user.id, found.session_id)
        language = language_of(request)
        if self._edit_applies(found.user.id, open_id, self._editing.get(found.session_id)):
            return {"edit_button": text(language, "cancel_edit")}
        self._editing.pop(found.session_id, None)
        return {"edit_button": text(language, "edit_last_message")}

    def regenerate_label(self, request: gr.Request, tier):
        """"Regenerate (3 credits)": the chosen model's price, charged again for the new answer."""
        self.signed_in(request, touch=False)
        price = next((status.price for status in self.engine.tiers() if status.tier == tier), None)
        language = language_of(request)
        label = text(language, "regenerate") if price is None else text(language, "regenerate_price", price=price)
        return {"regenerate_button": label}

    @staticmethod
    def _bubble(update: chat.TurnUpdate, language: str = "en") -> str:
        return as_text(ChatPart._bubble_text(update, language))

    @staticmethod
    def _bubble_text(update: chat.TurnUpdate, language: str = "en") -> str:
        if update.status == "waiting":
            if update.restarting:
                return text(language, "model_restarting", model=update.model_label)
            if update.queue_position:
                return text(language, "queue_position", model=update.model_label, position=update.queue_position)
            return "…"
        if update.status == "streaming":
            return update.answer
        footer = text(language, "answer_footer", model=update.model_label, credits=update.credits_charged)
        parts = [update.answer] if update.answer else []
        if update.message:
            parts.append(translated(language, update.message))
        if figures := turn_figures(update, language):
            footer = f"{figures}\n{footer}"
        return "\n\n".join(parts + [footer])

    @shows_errors
    def stop(self, request: gr.Request):
        """Stop this browser session's answer; without a live session there is nothing to stop."""
        token = session_token(request)
        found = sessions.resolve_session(self.settings, token, touch=False) if token else None
        if found is not None and found.session_id in self._stop_events:
            self._stop_events[found.session_id].set()

    @shows_errors
    def new_chat(self, request: gr.Request):
        found = self.signed_in(request)
        conversations.set_open_conversation(found.user.id, found.session_id, None)
        return [], []

    def open_chat_view(self, user_id: int, session_id: int, language: str = "en") -> tuple[list, list]:
        """The chatbot and context of the session's open chat (empty for a new one)."""
        open_id = conversations.open_conversation_of(user_id, session_id)
        if open_id is None:
            return [], []
        turns = conversations.conversation_turns(user_id, open_id)
        return chat_messages(turns, language), conversations.context_of(turns)

    def new_chat_from_list(self, request: gr.Request):
        found = self.signed_in(request)
        conversations.set_open_conversation(found.user.id, found.session_id, None)
        return {"chatbot": [], "turns": [], "tabs": gr.Tabs(selected="chat")}

    def build_chat_tab(self, t, c: dict) -> None:
        with gr.Tab(t("chat"), id="chat"):
            c["model"] = gr.Dropdown(label=t("model"), choices=[], interactive=True)
            c["model_notes"] = gr.Markdown()
            c["chatbot"] = gr.Chatbot(
                label=t("chat"),
                height=420,
                render_markdown=True,  # over text made safe first (markup.py)
                sanitize_html=True,  # and Gradio's sanitizer after it
                allow_tags=False,
                latex_delimiters=[],
                buttons=["copy", "copy_all"],
                feedback_options=None,
            )
            # lines=1 (growing to max_lines): Enter sends and Shift+Enter adds a line; with
            # lines>1 Gradio does the opposite (docs FIELD_NOTES), unlike every chat app.
            c["message"] = gr.Textbox(label=t("message"), lines=1, max_lines=8, elem_id="message")
            with gr.Row():
                c["send_button"] = gr.Button(t("send"), variant="primary")
                c["stop_button"] = gr.Button(t("stop"), variant="stop", elem_id="stop-button")
                c["new_chat_button"] = gr.Button(t("new_chat"))
            with gr.Row():
                c["regenerate_button"] = gr.Button(t("regenerate"), size="sm", elem_id="regenerate-button")
                c["edit_button"] = gr.Button(t("edit_last_message"), size="sm", elem_id="edit-button")

    def wire_chat(self, c: dict) -> list:
        """Wires the chat's events; returns those that change the open chat (Edit's label follows them)."""
        chatbot, turns, model, message = c["chatbot"], c["turns"], c["model"], c["message"]
        # Chat. The engine queues per model, so this event may run for several users at once.
        chat_event = dict(
            fn=self.send,
            inputs=[model, message, chatbot, turns],
            outputs=[chatbot, message, c["balance"], turns],
            api_name="chat",
            concurrency_limit=2 * (self.settings.queue_size + 1),
            show_progress="hidden",
        )
        # Regenerate and an edited message replace the chat's last turn: a new turn, charged anew.
        regenerate_event = {**chat_event, "fn": self.regenerate, "inputs": [model], "api_name": "regenerate"}
        chat_changes = [
            c["send_button"].click(**chat_event),
            message.submit(**{**chat_event, "api_name": False}),
            c["regenerate_button"].click(**regenerate_event),
            c["new_chat_button"].click(self.new_chat, None, [chatbot, turns], api_name="new_chat"),
            chatbot.clear(self.new_chat, None, [chatbot, turns], api_name=False),  # its trash icon: a new chat too
        ]
        c["stop_button"].click(self.stop, None, None, api_name="stop", queue=False)
        self.wire(c["edit_button"].click, self.edit_last, [], ["message", "edit_button"], api_name="edit_last_message")
        self.wire(model.change, self.regenerate_label, ["model"], ["regenerate_button"], api_name=False, show_progress="hidden")
        return chat_changes

    def follow_chat_changes(self, events: list) -> None:
        """The Edit button shows "Cancel edit" while an edit waits for Send; anything that ends it resets it."""
        for event in events:
            self.wire(event.then, self.edit_state, [], ["edit_button"], api_name=False, show_progress="hidden")
