"""The Gradio app: sign-in, chat with a live balance, history, top-up and the admin dashboard.

The only module that imports gradio. Callbacks are thin: each one re-checks the session and the
user's rights on the server (a hidden component or a private API protects nothing), calls one
service, and shapes the result for the screen. The session lives in a server-side gr.State, which
a client cannot forge.
"""

from __future__ import annotations

import functools
import html
import secrets
import threading
import time
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from . import auth, chat, ledger
from .config import Settings
from .db import User
from .error_log import log_error
from .errors import GemmaChatError, NotLoggedInError, PermissionDeniedError
from .history import list_history, parse_page
from .reports import Reports
from .ui_text import TRANSLATIONS

SHORT_TEXT = 80  # characters of a prompt or answer shown in a table cell
# At most this often a streaming answer is re-sent: every update costs the server a full chatbot
# diff and SSE message, on the cores the model decodes with (bench/http.py measures it).
STREAM_INTERVAL_S = 0.05
QUEUE_POLL_S = 0.01  # see _calm_queue_polling


@dataclass
class Session:
    user_id: int
    username: str
    token: str
    last_seen: float


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def balance_text(user_id: int) -> str:
    return f"**Balance: {_plural(ledger.get_balance(user_id).balance, 'credit')}**"


def as_text(text: str) -> str:
    """The Chatbot renders HTML; escaping shows a prompt's or answer's markup as the text it is."""
    return html.escape(text, quote=False)


def shorten(text: str, limit: int = SHORT_TEXT) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shows_errors(callback):
    """For callbacks that answer with a popup: a refusal shows its message, a crash its error id."""

    @functools.wraps(callback)
    def wrapper(self, *args, **kwargs):
        try:
            return self._guarded(callback.__name__, callback, self, *args, **kwargs)
        except GemmaChatError as exc:
            raise gr.Error(exc.message, print_exception=False) from None

    return wrapper


class ChatApp:
    """Holds the services the callbacks use; `build()` makes the Blocks."""

    def __init__(self, settings: Settings, engine):
        self.settings = settings
        self.engine = engine
        self._stop_events: dict[str, threading.Event] = {}
        self.i18n = gr.I18n(**TRANSLATIONS)

    # --- sessions ---------------------------------------------------------------------

    def _start_session(self, user: User) -> Session:
        token = secrets.token_hex(16)
        self._stop_events[token] = threading.Event()
        return Session(user.id, user.username, token, time.monotonic())

    def current_user(self, session: Session | None, *, admin: bool = False, touch: bool = True) -> User:
        """The logged-in user, re-read from the database; raises when the session is gone or expired.

        `touch` counts the call as activity, extending the idle timeout.
        """
        if not isinstance(session, Session):
            raise NotLoggedInError("Please log in.")
        if time.monotonic() - session.last_seen > self.settings.session_idle_s:
            self._stop_events.pop(session.token, None)
            raise NotLoggedInError("Your session has expired; please log in again.")
        user = User.get_or_none(User.id == session.user_id)
        if user is None or user.is_disabled:
            raise NotLoggedInError("Please log in.")
        if admin and not user.is_admin:
            raise PermissionDeniedError("Administrators only.")
        if touch:
            session.last_seen = time.monotonic()
        return user

    def _guarded(self, location: str, function, *args, **kwargs):
        """Run a service call; an unexpected failure is logged and becomes a message with its id."""
        try:
            return function(*args, **kwargs)
        except GemmaChatError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise GemmaChatError(f"Something went wrong (error {log_error(f'ui:{location}', exc)}).") from exc

    # --- sign-in ----------------------------------------------------------------------

    def model_choices(self) -> tuple[list[tuple[str, str]], str | None, str]:
        """Dropdown choices (available tiers only), the default, and the reasons for the others."""
        choices, notes = [], []
        for status in self.engine.tiers():
            if status.available:
                choices.append((f"{status.label} · {_plural(status.price, 'credit')}", status.tier))
            else:
                notes.append(f"{status.label} is not available: {status.reason}")
        default = choices[0][1] if choices else None
        return choices, default, "\n\n".join(notes)

    def _signed_in(self, user: User, message: str = ""):
        session = self._start_session(user)
        choices, default, notes = self.model_choices()
        return (
            session,
            gr.update(visible=False),
            gr.update(visible=True),
            "",  # the password field is cleared after every attempt
            message,
            f"Signed in as **{user.username}**" + (" (admin)" if user.is_admin else ""),
            balance_text(user.id),
            gr.update(visible=bool(user.is_admin)),
            gr.update(choices=choices, value=default),
            notes,
            [],
            [],
        )

    def _sign_in_failed(self, message: str):
        return (None, gr.update(), gr.update(), "", message) + (gr.update(),) * 7

    def login(self, username, password):
        try:
            user = self._guarded("login", auth.login, self.settings, username, password)
        except GemmaChatError as exc:
            return self._sign_in_failed(exc.message)
        return self._signed_in(user)

    def register(self, username, password):
        try:
            user = self._guarded("register", auth.register_user, self.settings, username, password)
        except GemmaChatError as exc:
            return self._sign_in_failed(exc.message)
        return self._signed_in(user)

    def logout(self, session):
        if isinstance(session, Session):
            self._stop_events.pop(session.token, None)
        return None, gr.update(visible=True), gr.update(visible=False), "", "", [], [], gr.update(visible=False)

    def check_session(self, session):
        """Timer tick: an expired or revoked session returns the page to sign-in."""
        if session is None:
            return gr.update(), gr.update(), None
        try:
            self.current_user(session, touch=False)  # a timer tick is not activity
            return gr.update(), gr.update(), session
        except GemmaChatError:
            return gr.update(visible=True), gr.update(visible=False), None

    # --- chat -------------------------------------------------------------------------

    def send(self, session, tier, message, chatbot, turns):
        """Stream one answer into the chat; the balance follows."""
        chatbot = list(chatbot or [])
        turns = list(turns or [])
        try:
            user = self.current_user(session)
        except GemmaChatError as exc:
            raise gr.Error(exc.message, print_exception=False) from None
        stop = self._stop_events.setdefault(session.token, threading.Event())
        stop.clear()
        shown = chatbot + [{"role": "user", "content": as_text(message if isinstance(message, str) else "")}]
        update = None
        sent_text_at = None  # the first text goes out at once, later text at most every STREAM_INTERVAL_S
        try:
            for update in chat.run_turn(self.settings, self.engine, user.id, tier, message, turns, stop=stop):
                if update.status == "rejected":
                    raise gr.Error(update.message, print_exception=False)  # the message box keeps its text
                if update.status == "streaming":
                    now = time.monotonic()
                    if sent_text_at is not None and now - sent_text_at < STREAM_INTERVAL_S:
                        continue  # more text, or the final update, follows
                    sent_text_at = now
                yield shown + [{"role": "assistant", "content": self._bubble(update)}], "", gr.update(), turns
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 — run_turn settles its own hold; this is the UI's failure
            raise gr.Error(f"Something went wrong (error {log_error('ui:send', exc, user_id=user.id)}).") from None
        if update is not None and update.status in ("ok", "stopped") and update.answer:
            turns.append((message.strip(), update.answer))
        yield shown + [{"role": "assistant", "content": self._bubble(update)}], "", balance_text(user.id), turns

    @staticmethod
    def _bubble(update: chat.TurnUpdate) -> str:
        return as_text(ChatApp._bubble_text(update))

    @staticmethod
    def _bubble_text(update: chat.TurnUpdate) -> str:
        if update.status == "waiting":
            if update.restarting:
                return f"{update.model_label} is restarting; your answer starts as soon as it is back…"
            if update.queue_position:
                return f"Waiting for {update.model_label}: {update.queue_position} ahead of you…"
            return "…"
        if update.status == "streaming":
            return update.answer
        footer = f"— {update.model_label} · {_plural(update.credits_charged, 'credit')}"
        parts = [update.answer] if update.answer else []
        if update.message:
            parts.append(update.message)
        return "\n\n".join(parts + [footer])

    @shows_errors
    def stop(self, session):
        if isinstance(session, Session) and session.token in self._stop_events:
            self._stop_events[session.token].set()

    @shows_errors
    def new_chat(self, session):
        self.current_user(session)
        return [], []

    # --- history ----------------------------------------------------------------------

    HISTORY_COLUMNS = ["Date and time (UTC)", "Model", "Credits", "Status", "Prompt", "Answer"]

    @shows_errors
    def history(self, session, page):
        user = self.current_user(session)
        result = list_history(user.id, page or 1, self.settings.history_page_size)
        rows = [
            [f"{r.created_at:%Y-%m-%d %H:%M:%S}", r.model_name, r.credits_charged, r.status, shorten(r.prompt), shorten(r.answer)]
            for r in result.rows
        ]
        table = pd.DataFrame(rows, columns=self.HISTORY_COLUMNS)
        full = [(r.prompt, r.answer) for r in result.rows]
        label = f"Page {result.page} of {result.total_pages}"
        if not result.total:
            label += " — no chats yet"
        return table, label, result.page, full, "", ""

    @shows_errors
    def history_step(self, session, page, step):
        return self.history.__wrapped__(self, session, max(1, parse_page(page or 1) + step))

    @shows_errors
    def history_detail(self, session, full, event: gr.SelectData):
        self.current_user(session)
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        if not full or not isinstance(row, int) or not 0 <= row < len(full):
            return "", ""
        return full[row]

    # --- top-up -----------------------------------------------------------------------

    LEDGER_COLUMNS = ["Time (UTC)", "Kind", "Amount", "Balance after"]

    def ledger_table(self, user_id: int) -> pd.DataFrame:
        rows = [
            [f"{e.created_at:%Y-%m-%d %H:%M:%S}", e.kind, f"{e.amount:+d}", e.balance_after]
            for e in ledger.recent_entries(user_id, limit=20)
        ]
        return pd.DataFrame(rows, columns=self.LEDGER_COLUMNS)

    def top_up(self, session, amount):
        try:
            user = self.current_user(session)
            entry = self._guarded("top_up", ledger.top_up, user.id, amount, maximum=self.settings.max_topup)
        except GemmaChatError as exc:
            return f"⚠ {exc.message}", gr.update(), gr.update()
        message = f"Added {_plural(entry.amount, 'credit')}. New balance: {_plural(entry.balance_after, 'credit')}."
        return message, balance_text(user.id), self.ledger_table(user.id)

    @shows_errors
    def show_ledger(self, session):
        user = self.current_user(session)
        return self.ledger_table(user.id)

    # --- admin ------------------------------------------------------------------------

    @shows_errors
    def admin_report(self, session, since, until):
        self.current_user(session, admin=True)
        report = Reports.for_range(since, until).full()
        by_model = pd.DataFrame(report["requests_by_model"], columns=["model", "requests", "ok", "stopped", "failed", "refused", "credits"])
        by_user = pd.DataFrame(
            report["credits_by_user"], columns=["username", "credits_spent", "credits_topped_up", "credits_granted", "balance", "requests"]
        )
        per_day = pd.DataFrame(report["requests_per_day"], columns=["day", "model", "requests"])
        errors = pd.DataFrame(report["errors"], columns=["created_at", "error_id", "location", "exception_type", "message", "username", "request_id", "traceback"])
        error_table = errors.drop(columns=["traceback"])
        return by_model, by_model, by_user, by_user, per_day, error_table, errors["traceback"].tolist(), ""

    @shows_errors
    def error_detail(self, session, tracebacks, event: gr.SelectData):
        self.current_user(session, admin=True)
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        if not tracebacks or not isinstance(row, int) or not 0 <= row < len(tracebacks):
            return ""
        return tracebacks[row]

    # --- layout -----------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        t = self.i18n
        with gr.Blocks(title="gemma-chat") as demo:
            session = gr.State(None)
            turns = gr.State([])  # (prompt, answer) pairs of this chat: the context the model sees
            history_page = gr.State(1)
            history_full = gr.State([])
            error_tracebacks = gr.State([])

            with gr.Column(visible=True) as login_view:
                gr.Markdown("# gemma-chat")
                gr.Markdown(t("sign_in_intro"))
                username = gr.Textbox(label=t("username"), max_lines=1, autofocus=True)
                password = gr.Textbox(label=t("password"), type="password", max_lines=1)
                with gr.Row():
                    login_button = gr.Button(t("log_in"), variant="primary")
                    register_button = gr.Button(t("create_account"))
                login_message = gr.Markdown(elem_id="login-message")

            with gr.Column(visible=False) as app_view:
                with gr.Row(equal_height=True):
                    who = gr.Markdown(elem_id="who")
                    balance = gr.Markdown(elem_id="balance")
                    logout_button = gr.Button(t("log_out"), size="sm", scale=0)
                with gr.Tabs():
                    with gr.Tab(t("chat"), id="chat"):
                        model = gr.Dropdown(label=t("model"), choices=[], interactive=True)
                        model_notes = gr.Markdown()
                        chatbot = gr.Chatbot(
                            label=t("chat"),
                            height=420,
                            render_markdown=False,
                            allow_tags=False,
                            buttons=["copy", "copy_all"],
                            feedback_options=None,
                        )
                        message = gr.Textbox(label=t("message"), lines=2, max_lines=8)
                        with gr.Row():
                            send_button = gr.Button(t("send"), variant="primary")
                            stop_button = gr.Button(t("stop"), variant="stop")
                            new_chat_button = gr.Button(t("new_chat"))
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
                            page_label = gr.Markdown("Page 1 of 1")
                            next_button = gr.Button(t("next"), size="sm")
                        full_prompt = gr.Textbox(label=t("full_prompt"), interactive=False, lines=3)
                        full_answer = gr.Textbox(label=t("full_answer"), interactive=False, lines=6)
                    with gr.Tab(t("top_up"), id="topup") as topup_tab:
                        amount = gr.Number(label=t("credits_to_add"), value=10, precision=None)
                        topup_button = gr.Button(t("top_up"), variant="primary")
                        topup_message = gr.Markdown(elem_id="topup-message")
                        ledger_view = gr.Dataframe(headers=self.LEDGER_COLUMNS, interactive=False, datatype="str")
                    with gr.Tab(t("admin"), id="admin", visible=False) as admin_tab:
                        with gr.Row():
                            since = gr.Textbox(label=t("from_date"), placeholder="YYYY-MM-DD", max_lines=1)
                            until = gr.Textbox(label=t("to_date"), placeholder="YYYY-MM-DD", max_lines=1)
                            refresh_button = gr.Button(t("refresh"), variant="primary")
                        gr.Markdown(t("requests_per_model"))
                        model_plot = gr.BarPlot(x="model", y="requests", y_lim=[0, None], height=240)
                        model_table = gr.Dataframe(interactive=False)
                        gr.Markdown(t("credits_per_user"))
                        user_table = gr.Dataframe(interactive=False)
                        user_plot = gr.BarPlot(x="username", y="credits_spent", y_lim=[0, None], height=240)
                        gr.Markdown(t("requests_per_day"))
                        day_plot = gr.LinePlot(x="day", y="requests", color="model", y_lim=[0, None], height=240)
                        gr.Markdown(t("recent_errors"))
                        errors_table = gr.Dataframe(interactive=False, wrap=True)
                        error_text = gr.Textbox(label=t("error_details"), interactive=False, lines=8)

            # Sign-in. Undocumented: out of the API page, but still behind the same checks.
            signed_in_outputs = [
                session, login_view, app_view, password, login_message, who, balance, admin_tab,
                model, model_notes, chatbot, turns,
            ]
            for trigger in (login_button.click, password.submit):
                trigger(self.login, [username, password], signed_in_outputs, api_name="login", api_visibility="undocumented")
            register_button.click(
                self.register, [username, password], signed_in_outputs, api_name="register", api_visibility="undocumented"
            )
            logout_button.click(
                self.logout, [session], [session, login_view, app_view, password, login_message, chatbot, turns, admin_tab],
                api_visibility="undocumented",
            )
            timer = gr.Timer(30)
            timer.tick(self.check_session, [session], [login_view, app_view, session], api_visibility="private", show_progress="hidden")

            # Chat. The engine queues per model, so this event may run for several users at once.
            chat_event = dict(
                fn=self.send,
                inputs=[session, model, message, chatbot, turns],
                outputs=[chatbot, message, balance, turns],
                api_name="chat",
                concurrency_limit=2 * (self.settings.queue_size + 1),
                show_progress="hidden",
            )
            send_button.click(**chat_event)
            message.submit(**{**chat_event, "api_name": False})
            stop_button.click(self.stop, [session], None, api_name="stop", queue=False)
            new_chat_button.click(self.new_chat, [session], [chatbot, turns], api_name="new_chat")
            chatbot.clear(self.new_chat, [session], [chatbot, turns], api_name=False)  # its trash icon: a new chat too

            history_outputs = [history_table, page_label, history_page, history_full, full_prompt, full_answer]
            history_tab.select(self.history, [session, history_page], history_outputs, api_name="history")
            previous_button.click(lambda s, p: self.history_step(s, p, -1), [session, history_page], history_outputs, api_name=False)
            next_button.click(lambda s, p: self.history_step(s, p, +1), [session, history_page], history_outputs, api_name=False)
            history_table.select(self.history_detail, [session, history_full], [full_prompt, full_answer], api_name=False)

            topup_tab.select(self.show_ledger, [session], [ledger_view], api_name=False)
            topup_button.click(
                self.top_up, [session, amount], [topup_message, balance, ledger_view], api_name="top_up", api_visibility="undocumented"
            )

            admin_outputs = [model_plot, model_table, user_table, user_plot, day_plot, errors_table, error_tracebacks, error_text]
            admin_tab.select(self.admin_report, [session, since, until], admin_outputs, api_name="admin_report")
            refresh_button.click(self.admin_report, [session, since, until], admin_outputs, api_name=False)
            errors_table.select(self.error_detail, [session, error_tracebacks], [error_text], api_name=False)
        demo.queue(max_size=4 * (self.settings.queue_size + 1) * max(1, len(self.settings.tiers)))
        _calm_queue_polling(demo)
        return demo


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


def launch(demo: gr.Blocks, app: ChatApp, *, host: str, port: int, open_browser: bool, block: bool = True):
    """Launch with the safe options: no run history in localStorage (it would hold passwords)."""
    return demo.launch(
        server_name=host,
        server_port=port,
        inbrowser=open_browser,
        prevent_thread_lock=not block,
        run_history=False,
        footer_links=[],
        i18n=app.i18n,
        quiet=True,
        show_error=False,  # unexpected errors show their id, never their internals
    )
