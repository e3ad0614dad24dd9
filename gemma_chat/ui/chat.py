"""The chat: the transcript, the composer (message, Send, Stop), and the actions on the last turn
(Regenerate, Edit last message: disabled whenever they could not run, refused on the server all the
same). One turn runs through turn.run_turn, as the API's do. The chat's model and system prompt are
settings.py's.

The chat shown and the context the model sees always come from the server (the session's open
chat, chats/conversations.py), never from what the page sends.
"""

from __future__ import annotations

import threading
import time

import gradio as gr

from ..accounts import sessions
from ..billing import ledger
from ..chats import conversations, turn as chat_turn, versions
from ..ops.error_log import log_error
from ..errors import SOMETHING_WENT_WRONG, DatabaseRetryableError, GemmaChatError
from ..wording import Message
from .common import balance_text, notice, popup, session_token, shows_errors
from .text import language_of, text, translated
from .transcript import as_text, bar_after_replacement, chat_messages, live_bubble

# At most this often a streaming answer is re-sent: every update costs the server a full chatbot
# diff and SSE message, on the cores the model decodes with (bench/http.py measures it).
STREAM_INTERVAL_S = 0.05
# What a turn shows on the page, by name (Screen.wire maps them to the components).
CHAT_OUTPUTS = [
    "chatbot", "message", "balance", "turns", "send_button", "stop_button", "chat_notice", "chat_id", "shown_versions",
    "regenerate_button", "edit_button",
]
# Send turns into Stop, and nothing can replace the turn that streams; once it ends, action_state
# (follow_actions) says again what can run.
BUSY = {
    "send_button": gr.update(visible=False), "stop_button": gr.update(visible=True),
    "regenerate_button": gr.update(interactive=False), "edit_button": gr.update(interactive=False),
}
ACTION_OUTPUTS = ["regenerate_button", "edit_button"]
# The page's URL names the open chat. pushState, not a navigation: Back returns to the chat before.
SET_URL_JS = """
(id) => {
  const url = new URL(window.location.href);
  if ((url.searchParams.get("chat") || "") === (id || "")) return;
  if (id) url.searchParams.set("chat", id); else url.searchParams.delete("chat");
  window.history.pushState({chat: id || ""}, "", url);
}
"""
IDLE = {"send_button": gr.update(visible=True), "stop_button": gr.update(visible=False)}


class ChatPart:
    """Sending, streaming, stopping, and replacing the last turn."""

    def send(self, request: gr.Request, tier, message, chatbot, turns, system_prompt=None):
        """Stream one answer into the chat; the balance follows.

        After Edit last message, the message replaces the chat's last turn (a new charge). The box
        is emptied only once the server holds the message: a refusal leaves the text where it was
        (or, refused for credits, in the chat, marked, with a retry).
        """
        found = self._signed_in_for_chat(request)
        user = found.user
        open_id = conversations.open_conversation_of(user.id, found.session_id)
        editing = self._editing.pop(found.session_id, None)
        replaced = editing[1] if self._edit_applies(user.id, open_id, editing) else None
        # The page's chatbot is only shown back; anything but a list of messages (a forged event) starts it afresh.
        shown = list(chatbot) if isinstance(chatbot, list) else []
        answered = yield from self._answer(
            found, tier, message, shown, open_id, replaced, language_of(request), system_prompt
        )
        if not answered and replaced is not None:
            self._editing[found.session_id] = editing  # refused: still editing, nothing changed

    def regenerate(self, request: gr.Request, tier, system_prompt=None):
        """Answer the chat's last message again, replacing its answer (a new charge). The last message
        may be one refused for credits: this sends that message, never the one before it."""
        found = self._signed_in_for_chat(request)
        open_id = conversations.open_conversation_of(found.user.id, found.session_id)
        last = conversations.last_turn(found.user.id, open_id) if open_id is not None else None
        language = language_of(request)
        if last is None:
            yield {"chat_notice": notice(text(language, "no_answer_to_regenerate"))}
            return
        yield from self._answer(found, tier, last.prompt, None, open_id, last.id, language, system_prompt)

    def edit_message(self, request: gr.Request, tier, system_prompt, event: gr.EditData):
        """The chat's own edit (the pencil on a message): the last message, edited, replaces its turn."""
        found = self._signed_in_for_chat(request)
        language = language_of(request)
        open_id = conversations.open_conversation_of(found.user.id, found.session_id)
        shown = versions.shown_turns(found.user.id, open_id) if open_id is not None else []
        as_it_is = {"chatbot": chat_messages(shown, language), "shown_versions": self.owned(found.user.id, [])}
        index = getattr(event, "index", None)
        index = index[0] if isinstance(index, (list, tuple)) and index else index
        value = getattr(event, "value", None)
        value = value.get("text", "") if isinstance(value, dict) else value
        if not shown or index != 2 * (len(shown) - 1) or not isinstance(value, str):
            yield {**as_it_is, "chat_notice": notice(text(language, "only_last_editable"))}
            return
        answered = yield from self._answer(found, tier, value, None, open_id, shown[-1].turn.id, language, system_prompt)
        if not answered:  # the chat as it is, not as the page edited it
            yield as_it_is

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

    def _answer(
        self, found: sessions.SignedIn, tier, message, chatbot: list | None, open_id, replaces_id, language: str,
        system_prompt=None,
    ):
        """Run one turn and stream it: CHAT_OUTPUTS by name, for each update.

        A replacement (`replaces_id`) is shown in place of the turn it replaces, and refused
        (insufficient credits, an answer still streaming) with a notice that leaves the chat as it
        was. Returns False when the message was not taken. Messages are in `language`.
        """
        user = found.user
        if replaces_id is not None and self._answering.get(found.session_id):
            yield {"chat_notice": notice(text(language, "wait_for_answer"))}
            return False
        try:
            system_prompt = conversations.clean_system_prompt(system_prompt)
        except GemmaChatError as exc:
            yield {"chat_notice": notice(translated(language, exc))}
            return False
        # The chat and the context the model sees come from the server (the session's open chat),
        # never from the page: a page's State or chatbot cannot put words in another turn's mouth.
        from_box = chatbot is not None  # Send empties the box once the message is held; Regenerate leaves a draft alone
        if open_id is None:
            earlier = []
        elif replaces_id is None:
            earlier = conversations.conversation_turns(user.id, open_id, limit=conversations.CONTEXT_TURNS)
        else:  # the whole chat is shown again (each answer at its latest version), without the turn being replaced
            shown_again = [  # an imported turn's id is of another table: it may equal the replaced one's
                shown for shown in versions.shown_turns(user.id, open_id) if shown.turn.imported or shown.turn.id != replaces_id
            ]
            chatbot = chat_messages(shown_again, language)
            earlier = [shown.turn for shown in shown_again]
        context = conversations.context_of(earlier[-conversations.CONTEXT_TURNS:])
        shown = chatbot + [{"role": "user", "content": as_text(message if isinstance(message, str) else "")}]
        stop = self._stop_events.setdefault(found.session_id, threading.Event())
        stop.clear()
        update = None
        sent_text_at = None  # the first text goes out at once, later text at most every STREAM_INTERVAL_S
        turn = chat_turn.run_turn(
            self.settings, self.engine, user.id, tier, message, context, stop=stop,
            conversation_id=open_id, new_conversation=open_id is None, replaces_id=replaces_id,
            system_prompt=system_prompt,
        )
        held = {}  # what the first update after the hold adds (once): the box emptied, Send turned into Stop
        with self._answering_lock:
            self._answering[found.session_id] = self._answering.get(found.session_id, 0) + 1
        try:
            for update in turn:
                if open_id is None and update.conversation_id is not None:
                    open_id = update.conversation_id  # this turn started a chat: the session keeps it open
                    conversations.set_open_conversation(user.id, found.session_id, open_id)
                if open_id is not None and held == {} and update.status not in ("rejected", "busy"):
                    self._keep_chat_settings(user.id, open_id, tier, system_prompt)
                if update.status in ("rejected", "busy") or (replaces_id is not None and update.status == "refused"):
                    # Not taken: the text stays in the box (or the old answer in the chat), the reason beside it.
                    yield {"chat_notice": notice(translated(language, update.message)), **IDLE}
                    return False
                if update.status == "refused":  # kept in the chat, marked refused; Retry sends it again
                    yield {
                        "chatbot": shown + [{"role": "assistant", "content": as_text(text(language, "answer_refused"))}],
                        "message": "" if from_box else gr.update(), "chat_notice": notice(translated(language, update.message)),
                        "balance": balance_text(user.id, language), "chat_id": str(open_id or ""), **IDLE,
                    }
                    return False
                if not held:
                    held = {"message": "" if from_box else gr.update(), "chat_notice": "", "chat_id": str(open_id or ""), **BUSY}
                    if replaces_id is not None:  # the chat was shown again: no earlier version is chosen any more
                        held["shown_versions"] = self.owned(user.id, [])
                    first = held
                else:
                    first = {}
                if update.status == "streaming":
                    now = time.monotonic()
                    if sent_text_at is not None and now - sent_text_at < STREAM_INTERVAL_S:
                        continue  # more text, or the final update, follows
                    sent_text_at = now
                if not update.final:
                    yield {**first, "chatbot": shown + [{"role": "assistant", "content": live_bubble(update, language)}]}
        except Exception as exc:  # noqa: BLE001 — run_turn settles its own hold; this is the UI's failure
            error_id = log_error("ui:send", exc, user_id=user.id)
            yield {"chat_notice": notice(translated(language, Message(SOMETHING_WENT_WRONG, error_id=error_id))), **IDLE}
            return False
        finally:
            with self._answering_lock:
                self._answering[found.session_id] -= 1
                if not self._answering[found.session_id]:
                    del self._answering[found.session_id]
        if update is not None and update.status in ("ok", "stopped") and update.answer:
            context = context + [(message.strip(), update.answer)]
        try:
            balance, hint = balance_text(user.id, language), self.low_balance_hint(user.id, tier, language)
            took_place = replaces_id is not None and update is not None and update.status in ("ok", "stopped") and update.answer
            bar = bar_after_replacement(user.id, open_id, replaces_id, language) if took_place else ""
        except DatabaseRetryableError:  # the database went away with the turn: its bubble says what happened
            balance, hint, bar = gr.update(), "", ""
        # Not the box: what was typed while the answer streamed stays there.
        yield {
            "chatbot": shown + [{"role": "assistant", "content": live_bubble(update, language, bar)}],
            "balance": balance, "turns": context, "chat_id": str(open_id or ""), "chat_notice": hint, **IDLE,
        }
        return True

    def edit_last(self, request: gr.Request):
        """Put the chat's last message back in the box: the next Send replaces it. Again: cancel."""
        found = self.signed_in(request)
        language = language_of(request)
        if self._editing.pop(found.session_id, None) is not None:
            return {"edit_button": text(language, "edit_last_message"), "chat_notice": ""}
        if self._answering.get(found.session_id):
            return {"chat_notice": notice(text(language, "wait_for_answer"))}
        open_id = conversations.open_conversation_of(found.user.id, found.session_id)
        last = conversations.last_turn(found.user.id, open_id) if open_id is not None else None
        if last is None:
            return {"chat_notice": notice(text(language, "no_message_to_edit"))}
        if last.imported:  # Send would be refused: say so now, before the message is rewritten
            return {"chat_notice": notice(translated(language, conversations.IMPORTED_NOT_REPLACEABLE))}
        self._editing[found.session_id] = (open_id, last.id)
        return {"message": last.prompt, "edit_button": text(language, "cancel_edit"), "chat_notice": ""}

    def action_state(self, request: gr.Request, tier):
        """Regenerate and Edit last message as the page should offer them now (chat_actions)."""
        return self.chat_actions(self.signed_in(request, touch=False), tier, language_of(request))

    def chat_actions(self, found: sessions.SignedIn, tier, language: str) -> dict:
        """Regenerate ("Regenerate (3 credits)": the chosen model's price) and Edit last message ("Cancel
        edit" while an edit waits for Send), each enabled only when pressing it would run: the chat has
        a last turn that is not imported and not streaming, and Regenerate's model is there and paid for.
        An edit that no longer applies (its turn replaced, another chat open) ends here."""
        user_id, session_id = found.user.id, found.session_id
        open_id = conversations.open_conversation_of(user_id, session_id)
        editing = self._edit_applies(user_id, open_id, self._editing.get(session_id))
        if not editing:
            self._editing.pop(session_id, None)
        last = conversations.last_turn(user_id, open_id) if open_id is not None else None
        replaceable = (
            last is not None and not last.imported and last.status != "pending" and not self._answering.get(session_id)
        )
        model = self.chosen_tier(tier)
        paid = model is not None and model.available and ledger.get_balance(user_id).available >= model.price
        label = text(language, "regenerate") if model is None else text(language, "regenerate_price", price=model.price)
        return {
            "regenerate_button": gr.update(value=label, interactive=replaceable and paid),
            "edit_button": gr.update(
                value=text(language, "cancel_edit" if editing else "edit_last_message"), interactive=editing or replaceable
            ),
        }

    @shows_errors
    def stop(self, request: gr.Request):
        """Stop this browser session's answer; without a live session there is nothing to stop."""
        token = session_token(request)
        found = sessions.resolve_session(self.settings, token, touch=False) if token else None
        if found is not None and found.session_id in self._stop_events:
            self._stop_events[found.session_id].set()

    def new_chat(self, request: gr.Request):
        """An empty chat with the user's default system prompt; the URL loses its ?chat=."""
        found = self.signed_in(request)
        conversations.set_open_conversation(found.user.id, found.session_id, None)
        return {
            "chatbot": [], "turns": [], "chat_id": "", "chat_notice": "", "settings_notice": "",
            "shown_versions": self.owned(found.user.id, []),
            "system_prompt": conversations.default_system_prompt(found.user.id),
        }

    def open_chat_view(self, user_id: int, session_id: int, language: str = "en") -> tuple[list, list]:
        """The chatbot and context of the session's open chat (empty for a new one), each answer at its
        latest version."""
        open_id = conversations.open_conversation_of(user_id, session_id)
        if open_id is None:
            return [], []
        shown = versions.shown_turns(user_id, open_id)
        return chat_messages(shown, language), conversations.context_of([each.turn for each in shown])

    def opened_chat(self, found: sessions.SignedIn, language: str) -> dict:
        """Everything the chat screen shows of the session's open chat: its turns, model, system prompt, URL."""
        shown, context = self.open_chat_view(found.user.id, found.session_id, language)
        open_id = conversations.open_conversation_of(found.user.id, found.session_id)
        if open_id is None:
            settings = conversations.ChatSettings(None, conversations.default_system_prompt(found.user.id))
        else:
            settings = conversations.chat_settings(found.user.id, open_id)
        outputs = {
            "chatbot": shown, "turns": context, "chat_id": str(open_id or ""), "system_prompt": settings.system_prompt,
            "chat_notice": "", "settings_notice": "", "shown_versions": self.owned(found.user.id, []),
        }
        if settings.tier in {status.tier for status in self.engine.tiers() if status.available}:
            outputs["model"] = settings.tier
        return outputs

    def build_chat_tab(self, t, c: dict) -> None:
        with gr.Tab(t("chat"), id="chat", elem_id="chat-tab"):
            c["chatbot"] = gr.Chatbot(
                show_label=False,
                elem_id="transcript",
                height="calc(100dvh - 250px)",  # the transcript fills the screen above the composer
                min_height=240,
                render_markdown=True,  # over text made safe first (markup.py)
                sanitize_html=True,  # and Gradio's sanitizer after it
                allow_tags=False,
                latex_delimiters=[],
                buttons=["copy", "copy_all"],
                feedback_options=None,
                editable="user",
            )
            with gr.Row(elem_id="composer", equal_height=True):
                # lines=1 (growing to max_lines): Enter sends and Shift+Enter adds a line; with
                # lines>1 Gradio does the opposite (docs FIELD_NOTES), unlike every chat app.
                c["message"] = gr.Textbox(
                    label=t("message"), show_label=False, placeholder=t("message"), lines=1, max_lines=8,
                    elem_id="message", scale=5, min_width=160,
                )
                c["model"] = gr.Dropdown(
                    label=t("model"), show_label=False, choices=[], interactive=True, scale=2, min_width=200, elem_id="model",
                )
                c["send_button"] = gr.Button(t("send"), variant="primary", scale=0, min_width=72, elem_id="send-button")
                c["stop_button"] = gr.Button(t("stop"), scale=0, min_width=72, elem_id="stop-button", visible=False)
            c["chat_notice"] = gr.Markdown(elem_id="chat-notice")
            c["model_notes"] = gr.Markdown()
            with gr.Row(elem_id="chat-actions"):
                # Disabled until the page's load event says what the open chat allows (chat_actions).
                c["regenerate_button"] = gr.Button(t("regenerate"), size="sm", elem_id="regenerate-button", scale=0, interactive=False)
                c["edit_button"] = gr.Button(t("edit_last_message"), size="sm", elem_id="edit-button", scale=0, interactive=False)
            self.build_chat_settings(t, c)
            # The open chat's id, for the page's URL (?chat=ID): hidden by the page's style, not by
            # visible=False (an invisible component is not on the page, so its change would not fire).
            c["chat_id"] = gr.Textbox(elem_id="chat-id", elem_classes=["gc-hidden"], container=False, show_label=False)

    def wire_chat(self, c: dict) -> list:
        """Wires the chat's events; returns those that change the open chat (follow_actions)."""
        chatbot, model, message, system_prompt = c["chatbot"], c["model"], c["message"], c["system_prompt"]
        outputs = CHAT_OUTPUTS
        # Send and Enter are one event: while its answer streams, a second press is ignored
        # (trigger_mode "once") and Send is hidden behind Stop, so what is typed meanwhile stays in the box.
        # The engine queues per model, so this event may run for several users at once.
        options = dict(concurrency_limit=2 * (self.settings.queue_size + 1), concurrency_id="chat", show_progress="hidden")
        sent = self.wire(
            lambda trigger_fn, inputs, outputs_, **kw: gr.on(
                [c["send_button"].click, message.submit], trigger_fn, inputs, outputs_, trigger_mode="once", **kw
            ),
            self.send, ["model", "message", "chatbot", "turns", "system_prompt"], outputs, api_name="chat", **options,
        )
        # Regenerate (and the chat's own retry arrow) replace the chat's last turn: a new turn, charged anew.
        regenerated = self.wire(
            lambda trigger_fn, inputs, outputs_, **kw: gr.on(
                [c["regenerate_button"].click, chatbot.retry], trigger_fn, inputs, outputs_, trigger_mode="once", **kw
            ),
            self.regenerate, ["model", "system_prompt"], outputs, api_name="regenerate", **options,
        )
        edited = self.wire(chatbot.edit, self.edit_message, ["model", "system_prompt"], outputs, api_name=False, **options)
        new_chat_outputs = ["chatbot", "turns", "chat_id", "chat_notice", "settings_notice", "system_prompt", "shown_versions"]
        chat_changes = [
            sent, regenerated, edited,
            self.wire(chatbot.clear, self.new_chat, [], new_chat_outputs, api_name=False),  # its trash icon: a new chat
        ]
        c["stop_button"].click(self.stop, None, None, api_name="stop", queue=False)
        self.wire(c["edit_button"].click, self.edit_last, [], ["message", "edit_button", "chat_notice"], api_name="edit_last_message")
        self.wire_chat_settings(c)
        # The URL follows the open chat (?chat=ID), in the browser only: a reload, Back and a bookmark return to it.
        c["chat_id"].change(None, [c["chat_id"]], None, js=SET_URL_JS)
        return chat_changes

    def follow_actions(self, events: list) -> None:
        """After anything that changes what Regenerate and Edit could do (a turn, another chat, the
        model, the balance), the page is told (action_state)."""
        for event in events:
            self.wire(event.then, self.action_state, ["model"], ACTION_OUTPUTS, api_name=False, show_progress="hidden")

    def follow_turns(self, events: list) -> None:
        """After a turn the sidebar lists the chat it went to at the top (a new chat appears)."""
        for event in events:
            self.wire(event.then, self.refresh_chat_list, ["chat_search"], ["chat_list"], api_name=False, show_progress="hidden")
