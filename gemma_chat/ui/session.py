"""The shell around the screens: the sign-in form, the header (who, balance, log out), the page's
load event that shows one or the other, and the session timer.

Signing in and out are not Gradio events: the buttons call the app's own /auth routes from the
browser (web/app.py), which set or clear the HttpOnly cookie.
"""

from __future__ import annotations

import json

import gradio as gr

from ..accounts import sessions
from ..chats import conversations
from ..errors import GemmaChatError
from ..numbers import positive_id
from .common import ACCOUNT_DISABLED, SESSION_COOKIE, balance_text, session_token
from .markup import FOOTER_MARK
from .text import MESSAGES, language_of, text, translated

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
# Log out: the route ends the session and clears the cookie; then the page loads afresh (without
# ?chat=) on the sign-in form. A fresh page: the old one's session_hash belonged to the old cookie,
# and anything it sent afterwards would be refused by the edge. The load event's callback also runs
# at once, so the form shows even before the new page arrives.
_POST_JS = """
async () => {
  try { await fetch("auth/%s", {method: "POST", credentials: "same-origin"}); } catch (error) {}
  window.location.replace(window.location.pathname);
}
"""
LOGOUT_JS = _POST_JS % "logout"
LOGOUT_EVERYWHERE_JS = _POST_JS % "logout-all"


# The page's own style: hidden helper boxes, the chat list, a transcript that fills the screen with
# the composer pinned under it (on a phone too). Set by PAGE_JS, so web/app.py needs no css= of ours.
PAGE_CSS = """
.gc-hidden { display: none !important; }
/* The system's own sans-serif: Gradio's web font is not fetched offline, and its stand-in lacked a
   bold face (bold Latin letters came out as small capitals). */
.gradio-container { --font: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif !important; }
#chat-list .gc-day { font-size: 0.78rem; opacity: 0.7; margin: 0.9rem 0 0.2rem 0.4rem; }
#chat-list .gc-chat { display: flex; align-items: center; border-radius: 6px; position: relative; }
#chat-list .gc-chat:hover, #chat-list .gc-chat.gc-open { background: var(--background-fill-secondary); }
#chat-list .gc-chat.gc-open { font-weight: 600; }
#chat-list .gc-chat-link { flex: 1; min-width: 0; padding: 0.4rem 0.5rem; color: inherit; text-decoration: none;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
/* A row's "⋯" menu (row_menu.py): the chat list's and the Users table's (ids: over Gradio's own styles). */
#chat-list .gc-menu summary, #users-table .gc-menu summary { list-style: none; cursor: pointer; padding: 0.2rem 0.5rem;
  border-radius: 4px; }
#chat-list .gc-menu summary::-webkit-details-marker, #users-table .gc-menu summary::-webkit-details-marker { display: none; }
#chat-list .gc-menu summary:hover, #chat-list .gc-menu[open] summary,
#users-table .gc-menu summary:hover, #users-table .gc-menu[open] summary { background: var(--background-fill-secondary); }
#chat-list .gc-menu :focus-visible, #users-table .gc-menu :focus-visible { outline: 2px solid var(--color-accent); outline-offset: 1px; }
#chat-list .gc-menu[open] > div, #users-table .gc-menu[open] > div { position: absolute; right: 0; top: 100%; z-index: 20;
  display: flex; flex-direction: column; background: var(--background-fill-primary); border: 1px solid var(--border-color-primary);
  border-radius: 6px; box-shadow: var(--shadow-drop-lg); min-width: 9rem; padding: 0.25rem 0; }
#chat-list .gc-menu button, #users-table .gc-menu button { text-align: left; padding: 0.45rem 0.75rem; background: none;
  border: 0; border-radius: 0; cursor: pointer; white-space: nowrap; font-size: 0.9rem; font-weight: 400; color: inherit; }
#chat-list .gc-menu button:hover, #users-table .gc-menu button:hover { background: var(--background-fill-secondary); }
#chat-list .gc-empty { opacity: 0.7; padding: 0.5rem; }
/* The Users table (admin/users.py): a "⋯" menu at the end of each row; on a phone each row is a card. */
#users-table .gc-table { width: 100%; border-collapse: collapse; border: 0; margin: 0; font-size: 0.9rem; }
#users-table thead, #users-table tbody, #users-table tr { border: 0; }
#users-table th { text-align: left; font-weight: 600; padding: 0.45rem 0.5rem; white-space: nowrap; border: 0;
  border-bottom: 1px solid var(--border-color-primary); }
#users-table td { padding: 0.35rem 0.5rem; border: 0; border-bottom: 1px solid var(--border-color-primary); }
#users-table td:first-child { font-weight: 600; overflow-wrap: anywhere; }
#users-table tbody tr:hover { background: var(--background-fill-secondary); }
#users-table tr[data-state="disabled"] td:not(.gc-actions) { opacity: 0.6; }
#users-table td.gc-actions { position: relative; width: 2.5rem; text-align: right; }
#users-table .gc-empty { opacity: 0.7; }
.gc-sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
/* A dialog over the page (the Users section's): near the top, the page dimmed behind it. */
.gc-dialog { position: fixed !important; z-index: 1000; top: 12vh; left: 50%; transform: translateX(-50%);
  width: min(30rem, calc(100vw - 2rem)) !important; min-width: 0 !important; flex: none !important; padding: 1rem !important; background: var(--background-fill-primary) !important;
  border: 1px solid var(--border-color-primary); border-radius: 8px;
  box-shadow: 0 0 0 100vmax rgba(0, 0, 0, 0.35), var(--shadow-drop-lg); }
#chat-notice p, #settings-notice p { margin: 0; font-size: 0.9rem; }
#composer { align-items: flex-end; }
#chat-actions button { flex: 0 0 auto; }
/* The chat's own Retry (on the last answer) and Edit (on a message) replace the last turn and charge
   for it, as Regenerate does: shown only while Regenerate is enabled (chat.py chat_actions), and Edit
   on the last message only. Gradio puts each after the message's Copy button. */
#chat-tab:has(#regenerate-button:disabled) #transcript .message-buttons button:not(:first-child),
#transcript .message-buttons-right:has(~ .message-buttons-right) button:not(:first-child) { display: none !important; }
/* An answer's figures and price (markup.py with_footer): a small, muted line under it, drawn as the
   answer ends (a streaming answer has none, so its text keeps its size). */
#transcript .gc-footer { display: block; font-size: 0.8em; line-height: 1.5; color: var(--body-text-color-subdued); }
/* An answer's version arrows (‹ 2/2 ›): buttons a thumb can hit (an arrow at either end is plain text),
   a ring for the keyboard. */
#transcript a[href^="#gc-version-"] { display: inline-block; min-width: 2.2rem; padding: 0.15rem 0.5rem;
  text-align: center; text-decoration: none; border-radius: 6px; border: 1px solid var(--border-color-primary);
  color: var(--color-accent); font-weight: 600; }
#transcript a[href^="#gc-version-"]:hover { background: var(--background-fill-secondary); }
#transcript a[href^="#gc-version-"]:focus-visible { outline: 2px solid var(--color-accent); outline-offset: 1px; }
@media (max-width: 640px) {
  #header { flex-wrap: nowrap !important; gap: 6px !important; align-items: center; }
  #header > * { min-width: 0 !important; }
  #who { display: none !important; }
  #balance { flex: 1 1 0 !important; font-size: 0.9rem; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  #header button { flex: 0 0 auto !important; font-size: 0.75rem; padding: 4px 8px; min-width: 0 !important; white-space: nowrap; }
  #composer .form { flex: 1 1 0 !important; }
  #send-button, #stop-button { font-size: 0 !important; width: 44px; }  /* an arrow and a square: room for the message */
  #send-button::after { content: "➤"; font-size: 1.1rem; }
  #stop-button::after { content: "■"; font-size: 1.1rem; }
  #logout-everywhere-button { display: none !important; }  /* a phone keeps Log out; the laptop has both */
  #composer, #composer .form { flex-wrap: nowrap !important; flex-direction: row !important; gap: 4px !important; }
  #composer > *, #composer .form > * { min-width: 0 !important; }
  #composer #message { flex: 1 1 auto !important; }
  #composer #model { flex: 0 0 84px !important; }
  #composer button { flex: 0 0 auto !important; min-width: 0 !important; padding: 6px 10px; }
  #transcript { height: calc(100dvh - 290px) !important; }
  #users-table thead { display: none; }
  #users-table tr { display: block; position: relative; padding: 0.5rem 2.75rem 0.5rem 0.25rem;
    border-bottom: 1px solid var(--border-color-primary); }
  #users-table td { display: flex; justify-content: space-between; gap: 1rem; border: 0; padding: 0.1rem 0.25rem; }
  #users-table td::before { content: attr(data-label); opacity: 0.7; font-weight: 400; }
  #users-table td.gc-actions { position: absolute; top: 0.4rem; right: 0.25rem; width: auto; padding: 0; }
  #users-table td.gc-actions::before, #users-table td.gc-empty::before { content: none; }
}
"""

# Runs once when the page loads (web/app.py passes it to Gradio): the page's style; Esc; a click in
# a row's menu (row_menu.py) becomes its list's request event: "open:12", "rename:12" for the chat list
# (sidebar.py, Back/Forward between chats too), "disable:3" for the Users table (admin/users.py).
PAGE_JS = """
() => {
  const style = document.createElement("style");
  style.textContent = %(css)s;
  document.head.appendChild(style);
  // Esc closes what is open, innermost first: a row's menu (the focus back on its ⋯), then a dialog
  // (its Cancel); otherwise it presses Stop (harmless when nothing streams).
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.isComposing) return;
    const menu = document.querySelector("details.gc-menu[open]");
    if (menu) {
      menu.open = false;
      menu.querySelector("summary")?.focus();
      return;
    }
    const cancel = [...document.querySelectorAll("#account-cancel, #create-user-cancel")].find((each) => each.getClientRects().length > 0);
    if (cancel) return cancel.click();
    const stop = document.querySelector("#stop-button");
    if (stop && stop.offsetParent !== null) stop.click();
  });
  let sent = 0;
  const request = (name, action) => {  // the hidden #name box gets the action, then #name-button is pressed
    const box = document.querySelector(`#${name} textarea, #${name} input`);
    const button = document.querySelector(`#${name}-button`);
    if (!box || !button) return;
    box.value = action + ":" + (++sent);
    box.dispatchEvent(new Event("input", {bubbles: true}));
    setTimeout(() => button.click(), 30);
  };
  const chatRequest = (action) => request("chat-request", action);
  // A row's action in a list the server draws (row_menu.py) becomes that list's request event.
  const rowLists = {"chat-list": "chat-request", "users-table": "account-request"};
  const openMenus = () => [...document.querySelectorAll("details.gc-menu[open]")];
  document.addEventListener("click", (event) => {
    openMenus().forEach((menu) => { if (!menu.contains(event.target)) menu.open = false; });  // one menu at a time
    const target = event.target.closest("[data-action][data-id]");
    const list = target && target.closest(Object.keys(rowLists).map((id) => "#" + id).join(", "));
    if (!list) return;
    if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;  // a new tab: the link
    event.preventDefault();
    const menu = target.closest("details");
    if (menu) menu.open = false;
    const action = target.dataset.action, id = target.dataset.id;
    if (list.id === "chat-list" && action === "open") {
      const url = new URL(window.location.href);
      if (url.searchParams.get("chat") !== id) {
        url.searchParams.set("chat", id);
        window.history.pushState({chat: id}, "", url);
      }
    }
    if (list.id === "users-table") focusWhenShown("#account-dialog");
    request(rowLists[list.id], action + ":" + id);
  });
  // A dialog that opens from a click (the Users table's row menus, Create user) takes the focus,
  // so the keyboard goes on inside it.
  const shown = (each) => each.getClientRects().length > 0;  // a fixed dialog has no offsetParent
  const focusWhenShown = (selector) => {
    let waited = 0;
    const wait = setInterval(() => {
      const dialog = [...document.querySelectorAll(selector)].find(shown);
      if (dialog) {
        clearInterval(wait);
        const fields = [...dialog.querySelectorAll("input:not([type=hidden]), textarea")].filter(shown);
        (fields[0] || [...dialog.querySelectorAll("button")].find(shown))?.focus();
      } else if ((waited += 100) > 5000) clearInterval(wait);
    }, 100);
  };
  document.addEventListener("click", (event) => {
    if (event.target.closest("#create-user-button")) focusWhenShown("#create-user-dialog");
  });
  // An answer's ‹ and › (transcript.py version_bar) become one `version_request` event (versions.py).
  // The answer is drawn anew, so an arrow pressed from the keyboard gets the focus back afterwards.
  document.addEventListener("click", (event) => {
    const link = event.target.closest('#transcript a[href^="#gc-version-"]');
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    request("version-request", link.getAttribute("href"));
    if (event.detail !== 0) return;  // a mouse or a finger: no focus to keep
    const bubbles = () => [...document.querySelectorAll('#transcript [data-testid="bot"]')];
    const index = bubbles().findIndex((bubble) => bubble.contains(link));
    const arrow = link.textContent.trim();
    let waited = 0;
    const refocus = setInterval(() => {
      const bubble = bubbles()[index];
      const links = bubble ? [...bubble.querySelectorAll('a[href^="#gc-version-"]')] : [];
      if (links.length && !links.includes(link)) {
        (links.find((each) => each.textContent.trim() === arrow) || links[0]).focus();
        clearInterval(refocus);
      } else if ((waited += 100) > 5000) clearInterval(refocus);
    }, 100);
  }, true);
  // On a phone the chat list is a drawer: closed when the app appears, and after a chat is chosen.
  const closeDrawerOnPhone = () => {
    const bar = document.querySelector("#chats-sidebar");
    if (!bar || window.innerWidth >= 700) return Boolean(bar);
    if (bar.classList.contains("open")) bar.querySelector(".toggle-button")?.click();
    return true;
  };
  let waited = 0;
  const watch = setInterval(() => { if (closeDrawerOnPhone() || (waited += 200) > 60000) clearInterval(watch); }, 200);
  document.addEventListener("click", (event) => {
    if (event.target.closest("#chat-list .gc-chat-link, #new-chat-button")) setTimeout(closeDrawerOnPhone, 50);
  });
  window.addEventListener("popstate", () => {
    const id = new URL(window.location.href).searchParams.get("chat");
    chatRequest(id ? "open:" + id : "new:0");
  });
  // Copy takes the answer only: an answer's footer (figures, price, its element) sits between two
  // invisible marks (markup.py FOOTER_MARK), and the Chatbot's copy buttons copy a message's raw text.
  const clipboard = navigator.clipboard;
  if (clipboard && clipboard.writeText) {
    const writeText = clipboard.writeText.bind(clipboard);
    const footer = new RegExp("\\\\s*" + %(mark)s + "[^" + %(mark)s + "]*" + %(mark)s, "g");
    clipboard.writeText = (value) => writeText(typeof value === "string" ? value.replace(footer, "") : value);
  }
}
""" % {"css": json.dumps(PAGE_CSS), "mark": json.dumps(FOOTER_MARK)}


def chat_in_url(request) -> int | None:
    """The chat id of the page's URL (?chat=12), if it looks like one; ownership is checked by the caller."""
    params = getattr(request, "query_params", None)
    try:
        value = params.get("chat") if params is not None else None
    except Exception:  # noqa: BLE001 — a request without usable parameters names no chat
        return None
    return positive_id(value)


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
        "chatbot", "turns", "chat_id", "system_prompt", "chat_notice", "settings_notice", "sidebar", "chat_list",
        "sidebar_notice", "default_system_prompt", "regenerate_button", "edit_button",
    ]

    def restore(self, request: gr.Request):
        """Page load: a live session cookie shows the app (a reload keeps you signed in), with the
        chat the URL names (?chat=ID: a reload, Back and a bookmark return to it) or the session's."""
        try:
            found = self._guarded("restore", self.signed_in, request, touch=False)
        except GemmaChatError:
            return self._signed_out(request)
        user = found.user
        language = language_of(request)
        choices, default, notes = self.model_choices(language)
        asked = chat_in_url(request)
        if asked is not None:
            try:
                conversations.set_open_conversation(user.id, found.session_id, asked)
            except GemmaChatError:
                pass  # not (or no longer) this user's chat: the session's own chat shows instead
        opened = self._guarded("restore", self.opened_chat, found, language)
        model = opened.pop("model", default)
        return {
            **opened,
            "login_view": gr.update(visible=False),
            "app_view": gr.update(visible=True),
            "password": "",
            "login_message": "",
            "who": text(language, "signed_in_admin" if user.is_admin else "signed_in", username=user.username),
            "balance": balance_text(user.id, language),
            "admin_tab": gr.update(visible=bool(user.is_admin)),
            "model": gr.update(choices=choices, value=model),
            "model_notes": notes,
            "chat_notice": self.low_balance_hint(user.id, model, language),
            "sidebar": gr.update(visible=True),
            "chat_list": self.chat_list(user.id, found.session_id, None, language),
            "sidebar_notice": "",
            "default_system_prompt": conversations.default_system_prompt(user.id),
            **self.chat_actions(found, model, language),
        }

    def _signed_out(self, request):
        # The form's fields are left alone: on a slow machine this load event can answer after the
        # user has started typing. The page's turns State is left too: a cookie-less caller may
        # replay this page's session_hash here (web/edge.py) and must not change its State;
        # signing in again reloads the page, which starts a fresh one. Nothing the page has wired
        # a change event to is changed (the model picker): that event would be refused signed out.
        token = session_token(request)
        language = language_of(request)
        if token is None:
            message = gr.update()
        elif sessions.ended_because_disabled(token):
            message = translated(language, ACCOUNT_DISABLED)
        else:
            message = text(language, "session_expired")
        return {
            "login_view": gr.update(visible=True), "app_view": gr.update(visible=False), "password": gr.update(),
            "login_message": message, "who": gr.update(), "balance": gr.update(), "admin_tab": gr.update(),
            "model": gr.update(), "model_notes": "", "chatbot": [], "turns": gr.update(), "chat_id": gr.update(),
            "system_prompt": "", "chat_notice": "", "settings_notice": "", "sidebar": gr.update(visible=False),
            "chat_list": "", "sidebar_notice": "", "default_system_prompt": "",
            "regenerate_button": gr.update(), "edit_button": gr.update(),  # disabled as the page is built
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
        with gr.Row(equal_height=True, elem_id="header"):
            c["who"] = gr.Markdown(elem_id="who")
            c["balance"] = gr.Markdown(elem_id="balance")
            c["logout_button"] = gr.Button(t("log_out"), size="sm", scale=0)
            c["logout_everywhere_button"] = gr.Button(
                t("log_out_everywhere"), size="sm", scale=0, elem_id="logout-everywhere-button"
            )

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
