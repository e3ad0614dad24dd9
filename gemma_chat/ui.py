"""The Gradio app: sign-in form, chat with a live balance, history, top-up and the admin dashboard.

Callbacks are thin: each one resolves the user from the request's session cookie and re-checks the
user's rights (a hidden component or a private API protects nothing), calls one service, and shapes
the result for the screen, in the language the browser asks for (ui_text.py). Who the user is never
comes from gr.State: Gradio keys State by the client-chosen session_hash, which is an address, not a
credential. Signing in and out are not
Gradio events: the buttons call the app's own /auth routes from the browser (web/app.py), which set
the HttpOnly cookie, and reload the page.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time

import gradio as gr
import pandas as pd

from . import chat, conversations, ledger, sessions
from .config import Settings
from .store.db import User
from .error_log import log_error
from .errors import GemmaChatError, NotLoggedInError, PermissionDeniedError
from .history import list_history, parse_page
from .markup import as_markdown
from .reports import Reports
from .ui_account import AccountTab
from .ui_admin_models import AdminModelsSection
from .ui_admin_users import AdminUsersSection
from .ui_chats import ChatsTab
from .ui_text import MESSAGES, TRANSLATIONS, code_name, columns, language_of, text, translated
from .ui_topup import TopUpTab

HISTORY_COLUMN_KEYS = ["col_date_time", "col_model", "col_credits", "col_status", "col_prompt", "col_answer"]
SHORT_TEXT = 80  # characters of a prompt or answer shown in a table cell
# At most this often a streaming answer is re-sent: every update costs the server a full chatbot
# diff and SSE message, on the cores the model decodes with (bench/http.py measures it).
STREAM_INTERVAL_S = 0.05
QUEUE_POLL_S = 0.01  # see _calm_queue_polling


SESSION_COOKIE = "gemma_session"

# The sign-in buttons run in the browser: they post the form to the app's /auth routes, which set
# the session cookie (a Gradio event cannot), and reload the page, whose load event shows the app.
# The password box is cleared after every attempt; nothing of the form is kept in browser storage.
# Its fallback message is in the page's language (navigator.language, as Gradio's labels).
_POST_FORM_JS = """
async (username, password) => {
  let message = navigator.language.toLowerCase().startsWith("ru") ? %(ru)s : %(en)s;
  try {
    const response = await fetch("auth/%(route)s", {
      method: "POST",
      credentials: "same-origin",
      headers: {"content-type": "application/json"},
      body: JSON.stringify({username: username ?? "", password: password ?? ""}),
    });
    const body = await response.json().catch(() => ({}));
    if (response.ok && body.ok) {
      window.location.reload();
      return [username, "", ""];
    }
    message = body.message || message;
  } catch (error) {}
  return [username, "", message];
}
"""
_SIGN_IN_FAILED = {language: json.dumps(MESSAGES[language]["sign_in_failed"], ensure_ascii=False) for language in ("en", "ru")}
LOGIN_JS = _POST_FORM_JS % {"route": "login", **_SIGN_IN_FAILED}
REGISTER_JS = _POST_FORM_JS % {"route": "register", **_SIGN_IN_FAILED}
# Log out: the route ends the session and clears the cookie; then the load event's own callback
# shows the sign-in form (no reload, so a navigation right after the click is not cut short).
_POST_JS = """
async () => {
  try { await fetch("auth/%s", {method: "POST", credentials: "same-origin"}); } catch (error) {}
}
"""
LOGOUT_JS = _POST_JS % "logout"
LOGOUT_EVERYWHERE_JS = _POST_JS % "logout-all"


# Runs once when the page loads (web/app.py passes it to Gradio): Esc anywhere presses Stop, which
# is harmless when nothing streams (the stop event finds no running answer).
PAGE_JS = """
() => {
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.isComposing) return;
    const stop = document.querySelector("#stop-button");
    if (stop && stop.offsetParent !== null) stop.click();
  });
}
"""


def session_token(request) -> str | None:
    """The session cookie of the request that triggered an event (None without one)."""
    if request is None:
        return None
    return sessions.session_token((getattr(request, "headers", None) or {}).get("cookie"))  # web/edge.py's parser


def balance_text(user_id: int, language: str = "en") -> str:
    return text(language, "balance", n=ledger.get_balance(user_id).balance)


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


def shorten(text: str, limit: int = SHORT_TEXT) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def owned(user_id: int, rows: list) -> dict:
    """Rows kept in a page's gr.State, tagged with their owner: State is reached by session_hash."""
    return {"user_id": user_id, "rows": rows}


def owned_by(user_id: int, value) -> list:
    """The rows of `value` if they belong to `user_id`, else none (another user's or forged State)."""
    if isinstance(value, dict) and value.get("user_id") == user_id and isinstance(value.get("rows"), list):
        return value["rows"]
    return []


def request_of(args, kwargs):
    """The gr.Request among a callback's arguments (Gradio passes it where the signature asks)."""
    return next((value for value in (*args, *kwargs.values()) if isinstance(value, gr.Request)), None)


def error_popup(language: str, message: str) -> gr.Error:
    """An error popup (raise it) with an English `message` in `language`, its title too."""
    return gr.Error(translated(language, message), title=text(language, "error_title"), print_exception=False)


def warn(language: str, message: str) -> None:
    """A warning popup: unlike an error, it leaves the event's outputs as they are."""
    gr.Warning(message, title=text(language, "warning_title"))


def popup(request, exc: GemmaChatError) -> gr.Error:
    """A refusal as an error popup, in the language of the request."""
    return error_popup(language_of(request), exc.message)


def shows_errors(callback):
    """For callbacks that answer with a popup: a refusal shows its message, a crash its error id."""

    @functools.wraps(callback)
    def wrapper(self, *args, **kwargs):
        try:
            return self._guarded(callback.__name__, callback, self, *args, **kwargs)
        except GemmaChatError as exc:
            raise popup(request_of(args, kwargs), exc) from None

    return wrapper


class ChatApp(ChatsTab, TopUpTab, AccountTab, AdminModelsSection, AdminUsersSection):
    """Holds the services the callbacks use; `build()` makes the Blocks, one builder per new tab."""

    owned = staticmethod(owned)
    owned_by = staticmethod(owned_by)

    def __init__(self, settings: Settings, engine):
        self.settings = settings
        self.engine = engine
        self._stop_events: dict[str, threading.Event] = {}
        # Per session: answers streaming now, and the turn Edit last message put back in the box.
        self._answering: dict[int, int] = {}
        self._answering_lock = threading.Lock()  # one session's answers may run in two threads
        self._editing: dict[int, tuple[int, int]] = {}
        self.i18n = gr.I18n(**TRANSLATIONS)
        self.components: dict[str, gr.components.Component] = {}  # by name, filled by build()

    def named(self, callback, outputs: list[str]):
        """A callback that returns its outputs by name, as Gradio wants them: by component.

        A refusal becomes a popup with its message; an unexpected failure one with its error id.
        """
        components = self.components

        @functools.wraps(callback)
        def run(*args, **kwargs):
            try:
                result = self._guarded(callback.__name__, callback, *args, **kwargs)
            except GemmaChatError as exc:
                raise popup(request_of(args, kwargs), exc) from None
            return {components[name]: value for name, value in result.items() if name in outputs}

        return run

    def wire(self, trigger, callback, inputs: list[str], outputs: list[str], **options):
        c = self.components
        return trigger(self.named(callback, outputs), [c[name] for name in inputs], [c[name] for name in outputs], **options)

    def new_chat_from_list(self, request: gr.Request):
        found = self.signed_in(request)
        conversations.set_open_conversation(found.user.id, found.session_id, None)
        return {"chatbot": [], "turns": [], "tabs": gr.Tabs(selected="chat")}

    # --- sessions ---------------------------------------------------------------------

    def signed_in(self, request, *, admin: bool = False, touch: bool = True) -> sessions.SignedIn:
        """The request's live session and its user, re-read from the database; raises without one.

        `touch` counts the call as activity, extending the idle timeout.
        """
        token = session_token(request)
        if token is None:
            raise NotLoggedInError("Please log in.")
        found = sessions.resolve_session(self.settings, token, touch=touch)
        if found is None:
            raise NotLoggedInError("Your session has expired; please log in again.")
        if admin and not found.user.is_admin:
            raise PermissionDeniedError("Administrators only.")
        return found

    def current_user(self, request, *, admin: bool = False, touch: bool = True) -> User:
        """The signed-in user of this request (see signed_in)."""
        return self.signed_in(request, admin=admin, touch=touch).user

    def _guarded(self, location: str, function, *args, **kwargs):
        """Run a service call; an unexpected failure is logged and becomes a message with its id."""
        try:
            return function(*args, **kwargs)
        except (GemmaChatError, gr.Error):  # a refusal, or a popup a callback already made of one
            raise
        except Exception as exc:  # noqa: BLE001
            raise GemmaChatError(f"Something went wrong (error {log_error(f'ui:{location}', exc)}).") from exc

    # --- sign-in ----------------------------------------------------------------------

    def model_choices(self, language: str = "en") -> tuple[list[tuple[str, str]], str | None, str]:
        """Dropdown choices (available tiers only), the default, and the reasons for the others."""
        choices, notes = [], []
        for status in self.engine.tiers():
            if status.available:
                choices.append((text(language, "model_choice", label=status.label, price=status.price), status.tier))
            else:
                notes.append(text(language, "model_unavailable", label=status.label, reason=status.reason))
        default = choices[0][1] if choices else None
        return choices, default, "\n\n".join(notes)

    # In this order on the wire (a page's load event); the callbacks return them by name.
    RESTORE_OUTPUTS = [
        "login_view", "app_view", "password", "login_message", "who", "balance", "admin_tab", "model", "model_notes",
        "chatbot", "turns",
    ]

    def restore(self, request: gr.Request):
        """Page load: a live session cookie shows the app (a reload keeps you signed in)."""
        try:
            user = self._guarded("restore", self.current_user, request)
        except GemmaChatError:
            return self._signed_out(request)
        language = language_of(request)
        choices, default, notes = self.model_choices(language)
        found = self.signed_in(request, touch=False)
        shown, context = self._guarded("restore", self.open_chat_view, found.user.id, found.session_id, language)
        return {
            "login_view": gr.update(visible=False),
            "app_view": gr.update(visible=True),
            "password": "",
            "login_message": "",
            "who": text(language, "signed_in_admin" if user.is_admin else "signed_in", username=user.username),
            "balance": balance_text(user.id, language),
            "admin_tab": gr.update(visible=bool(user.is_admin)),
            "model": gr.update(choices=choices, value=default),
            "model_notes": notes,
            "chatbot": shown,
            "turns": context,
        }

    def _signed_out(self, request):
        # The form's fields are left alone: on a slow machine this load event can answer after the
        # user has started typing. The page's turns State is left too: a cookie-less caller may
        # replay this page's session_hash here (web/edge.py) and must not change its State;
        # signing in again reloads the page, which starts a fresh one.
        message = text(language_of(request), "session_expired") if session_token(request) else gr.update()
        return {
            "login_view": gr.update(visible=True), "app_view": gr.update(visible=False), "password": gr.update(),
            "login_message": message, "who": gr.update(), "balance": gr.update(), "admin_tab": gr.update(),
            "model": "", "model_notes": "", "chatbot": [], "turns": gr.update(),
        }

    def check_session(self, request: gr.Request):
        """Timer tick: an expired or revoked session returns the page to sign-in."""
        if session_token(request) is None:
            return gr.update(), gr.update()
        try:
            self.current_user(request, touch=False)  # a timer tick is not activity
            return gr.update(), gr.update()
        except GemmaChatError:
            return gr.update(visible=True), gr.update(visible=False)

    # --- chat -------------------------------------------------------------------------

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
        return as_text(ChatApp._bubble_text(update, language))

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

    # --- history ----------------------------------------------------------------------

    HISTORY_COLUMNS = columns("en", HISTORY_COLUMN_KEYS)
    HISTORY_OUTPUTS = ["history_table", "history_page_label", "history_page", "history_full", "full_prompt", "full_answer"]

    @shows_errors
    def history(self, request: gr.Request, page):
        user = self.current_user(request)
        language = language_of(request)
        result = list_history(user.id, page or 1, self.settings.history_page_size)
        rows = [
            [f"{r.created_at:%Y-%m-%d %H:%M:%S}", r.model_name + (" (API)" if r.source == "api" else ""), r.credits_charged,
             code_name(language, "status", r.status), shorten(r.prompt), shorten(r.answer)]
            for r in result.rows
        ]
        table = pd.DataFrame(rows, columns=columns(language, HISTORY_COLUMN_KEYS))
        full = owned(user.id, [(r.prompt, r.answer) for r in result.rows])
        label = text(language, "page_of" if result.total else "history_empty", page=result.page, pages=result.total_pages)
        return {
            "history_table": table, "history_page_label": label, "history_page": result.page, "history_full": full,
            "full_prompt": "", "full_answer": "",
        }

    @shows_errors
    def history_step(self, request: gr.Request, page, step):
        return self.history.__wrapped__(self, request, max(1, parse_page(page or 1) + step))

    def history_previous(self, request: gr.Request, page):
        return self.history_step(request, page, -1)

    def history_next(self, request: gr.Request, page):
        return self.history_step(request, page, +1)

    @shows_errors
    def history_detail(self, request: gr.Request, full, event: gr.SelectData):
        user = self.current_user(request)
        full = owned_by(user.id, full)
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        if not full or not isinstance(row, int) or not 0 <= row < len(full):
            return "", ""
        return full[row]

    # --- top-up -----------------------------------------------------------------------

    def top_up(self, request: gr.Request, amount):
        try:
            user = self.current_user(request)
            if not self.settings.self_topup:  # the tab hides the form; a raw call to this event is refused here
                raise PermissionDeniedError("Top-ups are turned off here; ask an administrator for credits.")
            entry = self._guarded("top_up", ledger.top_up, user.id, amount, maximum=self.settings.max_topup)
        except GemmaChatError as exc:
            return f"⚠ {translated(language_of(request), exc.message)}", gr.update(), gr.update()
        language = language_of(request)
        message = text(language, "topped_up", amount=entry.amount, balance=entry.balance_after)
        # the statement follows (ui_topup.py)
        return message, balance_text(user.id, language), self.ledger_table(user.id, language)

    # --- admin ------------------------------------------------------------------------

    ADMIN_REPORT_OUTPUTS = [
        "model_plot", "model_table", "user_table", "user_plot", "day_plot", "errors_table", "error_tracebacks",
        "error_text", "performance_table", "performance_plot", "active_table", "active_plot",
    ]

    @shows_errors
    def admin_report(self, request: gr.Request, since, until):
        user = self.current_user(request, admin=True)
        report = Reports.for_range(since, until).full()
        by_model = pd.DataFrame(report["requests_by_model"], columns=["model", "requests", "ok", "stopped", "failed", "refused", "credits"])
        by_user = pd.DataFrame(
            report["credits_by_user"], columns=["username", "credits_spent", "credits_topped_up", "credits_granted", "balance", "requests"]
        )
        per_day = pd.DataFrame(report["requests_per_day"], columns=["day", "model", "requests"])
        errors = pd.DataFrame(report["errors"], columns=["created_at", "error_id", "location", "exception_type", "message", "username", "request_id", "traceback"])
        error_table = errors.drop(columns=["traceback"])
        performance = pd.DataFrame(
            report["model_performance"],
            columns=["model", "requests", "error_rate", "ttft_median_ms", "ttft_p95_ms", "tokens_per_s", "answer_median_ms", "answer_p95_ms"],
        )
        active = pd.DataFrame(report["active_users_by_day"], columns=["day", "active_users"])
        return {
            "model_plot": by_model, "model_table": by_model, "user_table": by_user, "user_plot": by_user,
            "day_plot": per_day, "errors_table": error_table,
            "error_tracebacks": owned(user.id, errors["traceback"].tolist()), "error_text": "",
            "performance_table": performance, "performance_plot": performance, "active_table": active,
            "active_plot": active,
        }

    @shows_errors
    def error_detail(self, request: gr.Request, tracebacks, event: gr.SelectData):
        user = self.current_user(request, admin=True)
        tracebacks = owned_by(user.id, tracebacks)
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        if not tracebacks or not isinstance(row, int) or not 0 <= row < len(tracebacks):
            return ""
        return tracebacks[row]

    # --- layout -----------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        """The Blocks, without a route app of its own: web/app.py mounts it and hands the served one back."""
        with _without_throwaway_route_apps():
            return self._build_blocks()

    def _build_blocks(self) -> gr.Blocks:
        t = self.i18n
        # No analytics: an offline app does not phone home. Gradio's cache is swept hourly (the app
        # accepts no uploads, web/app.py, so it holds little).
        with gr.Blocks(title="gemma-chat", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
            turns = gr.State([])  # (prompt, answer) pairs of this chat: the context the model sees
            history_page = gr.State(1)
            history_full = gr.State([])
            error_tracebacks = gr.State([])

            with gr.Column(visible=True) as login_view:
                gr.Markdown("# gemma-chat")
                gr.Markdown(t("sign_in_intro" if self.settings.allow_registration else "sign_in_intro_closed"))
                username = gr.Textbox(label=t("username"), max_lines=1, autofocus=True)
                password = gr.Textbox(label=t("password"), type="password", max_lines=1)
                with gr.Row():
                    login_button = gr.Button(t("log_in"), variant="primary")
                    # Hidden when registration is off; /auth/register refuses on the server too (web/app.py).
                    register_button = gr.Button(t("create_account"), visible=self.settings.allow_registration)
                login_message = gr.Markdown(elem_id="login-message")

            with gr.Column(visible=False) as app_view:
                with gr.Row(equal_height=True):
                    who = gr.Markdown(elem_id="who")
                    balance = gr.Markdown(elem_id="balance")
                    logout_button = gr.Button(t("log_out"), size="sm", scale=0)
                    logout_everywhere_button = gr.Button(t("log_out_everywhere"), size="sm", scale=0)
                c = self.components
                with gr.Tabs() as tabs:
                    with gr.Tab(t("chat"), id="chat"):
                        model = gr.Dropdown(label=t("model"), choices=[], interactive=True)
                        model_notes = gr.Markdown()
                        chatbot = gr.Chatbot(
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
                        message = gr.Textbox(label=t("message"), lines=1, max_lines=8, elem_id="message")
                        with gr.Row():
                            send_button = gr.Button(t("send"), variant="primary")
                            stop_button = gr.Button(t("stop"), variant="stop", elem_id="stop-button")
                            new_chat_button = gr.Button(t("new_chat"))
                        with gr.Row():
                            regenerate_button = gr.Button(t("regenerate"), size="sm", elem_id="regenerate-button")
                            edit_button = gr.Button(t("edit_last_message"), size="sm", elem_id="edit-button")
                    c.update(
                        chatbot=chatbot, turns=turns, tabs=tabs, message=message, balance=balance, model=model,
                        regenerate_button=regenerate_button, edit_button=edit_button,
                    )
                    self.build_chats_tab(t, c)
                    with gr.Tab(t("history"), id="history") as history_tab:
                        history_table = gr.Dataframe(
                            headers=self.HISTORY_COLUMNS,
                            interactive=False,
                            wrap=True,
                            datatype="str",
                            column_widths=["15%", "20%", "8%", "9%", "24%", "24%"],
                        )
                        with gr.Row():
                            previous_button = gr.Button(t("previous"), size="sm")
                            page_label = gr.Markdown(t("page_1_of_1"))
                            next_button = gr.Button(t("next"), size="sm")
                        full_prompt = gr.Textbox(label=t("full_prompt"), interactive=False, lines=3)
                        full_answer = gr.Textbox(label=t("full_answer"), interactive=False, lines=6)
                    self.build_topup_tab(t, c)
                    self.build_account_tab(t, c)
                    with gr.Tab(t("admin"), id="admin", visible=False) as admin_tab:
                        with gr.Row():
                            since = gr.Textbox(label=t("from_date"), placeholder="YYYY-MM-DD", max_lines=1)
                            until = gr.Textbox(label=t("to_date"), placeholder="YYYY-MM-DD", max_lines=1)
                            refresh_button = gr.Button(t("refresh"), variant="primary")
                        gr.Markdown(t("requests_per_model"))
                        model_plot = gr.BarPlot(x="model", y="requests", y_lim=[0, None], height=240)
                        model_table = gr.Dataframe(interactive=False, elem_id="model-table")
                        gr.Markdown(t("credits_per_user"))
                        user_table = gr.Dataframe(interactive=False)
                        user_plot = gr.BarPlot(x="username", y="credits_spent", y_lim=[0, None], height=240)
                        gr.Markdown(t("requests_per_day"))
                        day_plot = gr.LinePlot(x="day", y="requests", color="model", y_lim=[0, None], height=240)
                        gr.Markdown(t("model_performance"))
                        performance_table = gr.Dataframe(interactive=False, elem_id="performance-table")
                        performance_plot = gr.BarPlot(x="model", y="tokens_per_s", y_lim=[0, None], height=240)
                        gr.Markdown(t("active_users_per_day"))
                        active_plot = gr.BarPlot(x="day", y="active_users", y_lim=[0, None], height=240)
                        active_table = gr.Dataframe(interactive=False)
                        self.build_admin_models(t, c)
                        self.build_admin_users(t, c)
                        gr.Markdown(t("recent_errors"))
                        errors_table = gr.Dataframe(interactive=False, wrap=True)
                        error_text = gr.Textbox(label=t("error_details"), interactive=False, lines=8)

            # Sign-in and out run in the browser against /auth (web/app.py): no Gradio event, no queue.
            sign_in_form = dict(inputs=[username, password], outputs=[username, password, login_message], show_progress="hidden")
            for trigger in (login_button.click, password.submit):
                trigger(None, js=LOGIN_JS, **sign_in_form)
            register_button.click(None, js=REGISTER_JS, **sign_in_form)
            # The page's load event and the session timer run outside the queue (queue=False): the
            # queue is for signed-in work only, and web/app.py refuses anonymous callers at its door.
            c.update(
                login_view=login_view, app_view=app_view, password=password, login_message=login_message, who=who,
                admin_tab=admin_tab, model_notes=model_notes,
            )
            for button, js in ((logout_button, LOGOUT_JS), (logout_everywhere_button, LOGOUT_EVERYWHERE_JS)):
                self.wire(
                    button.click(None, js=js).then, self.restore, [], self.RESTORE_OUTPUTS,
                    api_name="restore_after_log_out", api_visibility="private", queue=False,
                )
            self.wire(demo.load, self.restore, [], self.RESTORE_OUTPUTS, api_name="restore", api_visibility="undocumented", queue=False)
            timer = gr.Timer(30)
            timer.tick(self.check_session, None, [login_view, app_view], api_visibility="private", show_progress="hidden", queue=False)

            # Chat. The engine queues per model, so this event may run for several users at once.
            chat_event = dict(
                fn=self.send,
                inputs=[model, message, chatbot, turns],
                outputs=[chatbot, message, balance, turns],
                api_name="chat",
                concurrency_limit=2 * (self.settings.queue_size + 1),
                show_progress="hidden",
            )
            # Regenerate and an edited message replace the chat's last turn: a new turn, charged anew.
            regenerate_event = {**chat_event, "fn": self.regenerate, "inputs": [model], "api_name": "regenerate"}
            # The Edit button shows "Cancel edit" while an edit waits for Send; anything that ends it resets it.
            chat_changes = [
                send_button.click(**chat_event),
                message.submit(**{**chat_event, "api_name": False}),
                regenerate_button.click(**regenerate_event),
                new_chat_button.click(self.new_chat, None, [chatbot, turns], api_name="new_chat"),
                chatbot.clear(self.new_chat, None, [chatbot, turns], api_name=False),  # its trash icon: a new chat too
            ]
            stop_button.click(self.stop, None, None, api_name="stop", queue=False)
            self.wire(edit_button.click, self.edit_last, [], ["message", "edit_button"], api_name="edit_last_message")
            self.wire(model.change, self.regenerate_label, ["model"], ["regenerate_button"], api_name=False, show_progress="hidden")
            chat_changes.append(self.wire_chats_tab(c))
            self.wire_account_tab(c)
            chat_changes.append(
                self.wire(c["chats_new_chat_button"].click, self.new_chat_from_list, [], ["chatbot", "turns", "tabs"], api_name=False)
            )
            for event in chat_changes:
                self.wire(event.then, self.edit_state, [], ["edit_button"], api_name=False, show_progress="hidden")

            c.update(
                history_table=history_table, history_page_label=page_label, history_page=history_page,
                history_full=history_full, full_prompt=full_prompt, full_answer=full_answer,
            )
            self.wire(history_tab.select, self.history, ["history_page"], self.HISTORY_OUTPUTS, api_name="history")
            self.wire(previous_button.click, self.history_previous, ["history_page"], self.HISTORY_OUTPUTS, api_name=False)
            self.wire(next_button.click, self.history_next, ["history_page"], self.HISTORY_OUTPUTS, api_name=False)
            history_table.select(self.history_detail, [history_full], [full_prompt, full_answer], api_name=False)

            self.wire_topup_tab(c)

            c.update(
                since=since, until=until, model_plot=model_plot, model_table=model_table, user_table=user_table,
                user_plot=user_plot, day_plot=day_plot, errors_table=errors_table, error_tracebacks=error_tracebacks,
                error_text=error_text, performance_table=performance_table, performance_plot=performance_plot,
                active_table=active_table, active_plot=active_plot,
            )
            self.wire(admin_tab.select, self.admin_report, ["since", "until"], self.ADMIN_REPORT_OUTPUTS, api_name="admin_report")
            self.wire(refresh_button.click, self.admin_report, ["since", "until"], self.ADMIN_REPORT_OUTPUTS, api_name=False)
            errors_table.select(self.error_detail, [error_tracebacks], [error_text], api_name=False)
            self.wire_admin_models(c, admin_tab, refresh_button)
            self.wire_admin_users(c, admin_tab, refresh_button)
        # api_open=False: /gradio_api/run/* refuses queued events, so they run through the queue only.
        demo.queue(max_size=4 * (self.settings.queue_size + 1) * max(1, len(self.settings.tiers)), api_open=False)
        _calm_queue_polling(demo)
        return demo


@contextlib.contextmanager
def _without_throwaway_route_apps():
    """Gradio builds its whole FastAPI route app (≈340 routes, every event's signature inspected)
    when a Blocks is created, when it closes and on queue(); mount_gradio_app builds the one that
    serves once more. The throwaway builds were most of the start-up after `import gradio` (bench
    startup), so they are skipped while the Blocks is built, and web/app.py gives the Blocks the
    served app, as launch() does. Gradio internals: a later Gradio that renames them builds as before.
    """
    app_class = getattr(gr.blocks, "App", None)
    if app_class is None or not hasattr(app_class, "create_app"):
        yield
        return
    original = app_class.__dict__["create_app"]
    app_class.create_app = staticmethod(lambda *args, **kwargs: None)
    try:
        yield
    finally:
        app_class.create_app = original


def use_served_route_app(demo: gr.Blocks, served_app) -> None:
    """The queue runs events with `demo.app`: make it the route app that serves them."""
    demo.app = served_app


def _calm_queue_polling(demo: gr.Blocks) -> None:
    """Gradio's queue checks for new events every 1 ms and for progress every 10 ms, even when idle.

    Those wake-ups take CPU from the model's threads, which use every core: on 2 cores they cost
    the streamed answer about a tenth of its tokens/s (bench/http.py). Polling every 10 ms adds at
    most 10 ms before an event starts. The attributes are gradio internals, so this is best effort.
    """
    queue = getattr(demo, "_queue", None)
    if queue is None:
        return
    if isinstance(getattr(queue, "sleep_when_free", None), (int, float)):
        queue.sleep_when_free = max(queue.sleep_when_free, QUEUE_POLL_S)
    if isinstance(getattr(queue, "progress_update_sleep_when_free", None), (int, float)):
        queue.progress_update_sleep_when_free = max(queue.progress_update_sleep_when_free, 0.1)  # no progress bars here


def build_app(settings: Settings, engine) -> tuple[gr.Blocks, ChatApp]:
    app = ChatApp(settings, engine)
    return app.build(), app
