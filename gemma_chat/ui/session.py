"""The shell around the screens: the sign-in form, the header (who, balance, log out), the page's
load event that shows one or the other, and the session timer.

Signing in and out are not Gradio events: the buttons call the app's own /auth routes from the
browser (web/app.py), which set or clear the HttpOnly cookie.
"""

from __future__ import annotations

import json

import gradio as gr

from ..errors import GemmaChatError
from .common import SESSION_COOKIE, balance_text, session_token
from .text import MESSAGES, language_of, text

__all__ = ["PAGE_JS", "SESSION_COOKIE", "SessionPart"]

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


class SessionPart:
    """The page's load event, the session timer and the sign-in form."""

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

    def build_sign_in(self, t, c: dict) -> None:
        """The sign-in form (shown without a session); its buttons post to /auth in the browser."""
        with gr.Column(visible=True) as c["login_view"]:
            gr.Markdown("# gemma-chat")
            gr.Markdown(t("sign_in_intro" if self.settings.allow_registration else "sign_in_intro_closed"))
            c["username"] = gr.Textbox(label=t("username"), max_lines=1, autofocus=True)
            c["password"] = gr.Textbox(label=t("password"), type="password", max_lines=1)
            with gr.Row():
                c["login_button"] = gr.Button(t("log_in"), variant="primary")
                # Hidden when registration is off; /auth/register refuses on the server too (web/app.py).
                c["register_button"] = gr.Button(t("create_account"), visible=self.settings.allow_registration)
            c["login_message"] = gr.Markdown(elem_id="login-message")

    def build_header(self, t, c: dict) -> None:
        """Who is signed in, the balance, and the two ways out (inside the app view)."""
        with gr.Row(equal_height=True):
            c["who"] = gr.Markdown(elem_id="who")
            c["balance"] = gr.Markdown(elem_id="balance")
            c["logout_button"] = gr.Button(t("log_out"), size="sm", scale=0)
            c["logout_everywhere_button"] = gr.Button(t("log_out_everywhere"), size="sm", scale=0)

    def wire_session(self, demo: gr.Blocks, c: dict) -> None:
        # Sign-in and out run in the browser against /auth (web/app.py): no Gradio event, no queue.
        sign_in_form = dict(
            inputs=[c["username"], c["password"]], outputs=[c["username"], c["password"], c["login_message"]],
            show_progress="hidden",
        )
        for trigger in (c["login_button"].click, c["password"].submit):
            trigger(None, js=LOGIN_JS, **sign_in_form)
        c["register_button"].click(None, js=REGISTER_JS, **sign_in_form)
        # The page's load event and the session timer run outside the queue (queue=False): the
        # queue is for signed-in work only, and web/app.py refuses anonymous callers at its door.
        for button, js in ((c["logout_button"], LOGOUT_JS), (c["logout_everywhere_button"], LOGOUT_EVERYWHERE_JS)):
            self.wire(
                button.click(None, js=js).then, self.restore, [], self.RESTORE_OUTPUTS,
                api_name="restore_after_log_out", api_visibility="private", queue=False,
            )
        self.wire(demo.load, self.restore, [], self.RESTORE_OUTPUTS, api_name="restore", api_visibility="undocumented", queue=False)
        timer = gr.Timer(30)
        timer.tick(
            self.check_session, None, [c["login_view"], c["app_view"]], api_visibility="private", show_progress="hidden",
            queue=False,
        )
