"""The Gradio app: composes the screen parts (one module each) into one Blocks.

Callbacks are thin: each one resolves the user from the request's session cookie and re-checks the
user's rights (a hidden component or a private API protects nothing), calls one service, and shapes
the result for the screen, in the language the browser asks for (text.py). Who the user is never
comes from gr.State: Gradio keys State by the client-chosen session_hash, which is an address, not a
credential. Each part is a mixin of ChatApp with a `build_*` (its components, by name, into
`self.components`) and a `wire_*` (its events, through `Screen.wire`); common.py holds what they share.
"""

from __future__ import annotations

import contextlib
import threading

import gradio as gr

from ..config import Settings
from .account import AccountTab
from .admin.models import AdminModelsSection
from .admin.reports import AdminReportsSection
from .admin.users import AdminUsersSection
from .blocks import QuietBlocks
from .chat import ChatPart
from .common import Screen
from .history import HistoryTab
from .session import SessionPart
from .settings import SettingsPart
from .sidebar import ChatsTab
from .text import TRANSLATIONS
from .topup import TopUpTab
from .versions import VersionsPart

QUEUE_POLL_S = 0.01  # see _calm_queue_polling


class ChatApp(
    Screen, SessionPart, ChatPart, SettingsPart, VersionsPart, ChatsTab, HistoryTab, TopUpTab, AccountTab,
    AdminReportsSection, AdminModelsSection, AdminUsersSection,
):
    """Holds the services the callbacks use; `build()` makes the Blocks from the parts."""

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

    def build(self) -> gr.Blocks:
        """The Blocks, without a route app of its own: web/app.py mounts it and hands the served one back."""
        with _without_throwaway_route_apps():
            return self._build_blocks()

    def _build_blocks(self) -> gr.Blocks:
        t = self.i18n
        c = self.components
        # No analytics: an offline app does not phone home. Gradio's cache is swept hourly (the app
        # accepts no uploads, web/app.py, so it holds little). No request's failure prints a traceback (blocks.py).
        with QuietBlocks(title="gemma-chat", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
            c["turns"] = gr.State([])  # (prompt, answer) pairs of this chat: the context the model sees
            self.build_sign_in(t, c)
            self.build_sidebar(t, c)  # shown once signed in
            with gr.Column(visible=False) as c["app_view"]:
                self.build_header(t, c)
                self.build_versions(t, c)  # hidden: what the answers' version arrows send
                with gr.Tabs(elem_id="tabs") as c["tabs"]:
                    self.build_chat_tab(t, c)
                    self.build_history_tab(t, c)
                    self.build_topup_tab(t, c)
                    self.build_account_tab(t, c)
                    with gr.Tab(t("admin"), id="admin", visible=False) as c["admin_tab"]:
                        self.build_admin_dates(t, c)
                        with gr.Tabs(elem_id="admin-sections"):  # one section at a time, not one long page
                            with gr.Tab(t("admin_reports"), id="admin-reports"):
                                self.build_admin_reports(t, c)
                            with gr.Tab(t("admin_performance"), id="admin-performance"):
                                self.build_admin_performance(t, c)
                            with gr.Tab(t("admin_users"), id="admin-users"):
                                self.build_admin_users(t, c)
                            with gr.Tab(t("admin_models"), id="admin-models"):
                                self.build_admin_models(t, c)
                            with gr.Tab(t("admin_errors"), id="admin-errors"):
                                self.build_admin_errors(t, c)

            self.wire_session(demo, c)
            chat_events = self.wire_chat(c)
            self.wire_versions(c)
            self.follow_turns(chat_events[:3])  # Send, Regenerate, the chat's own edit
            # Regenerate and Edit follow whatever changes what they could do: a turn, another chat, the balance.
            self.follow_actions(chat_events + self.wire_sidebar(c) + self.wire_account_tab(c) + self.wire_topup_tab(c))
            self.wire_history_tab(c)
            self.wire_admin_reports(c)
            self.wire_admin_models(c, c["admin_tab"], c["refresh_button"])
            self.wire_admin_users(c, c["admin_tab"], c["refresh_button"])
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

