"""What every screen part shares: who the request is (from its cookie), the one way an error is
shown, the by-name wiring of callbacks, and rows kept in a page's State tagged with their owner.

`Screen` is the base of ChatApp (app.py); each part (session.py, chat.py, sidebar.py, …) is a mixin
with a `build_*` that puts its components into `self.components` by name and a `wire_*` that wires
their events through `Screen.wire`. The parts never import each other.
"""

from __future__ import annotations

import functools
import inspect

import gradio as gr

from ..accounts import sessions
from ..billing import ledger
from ..ops.error_log import log_error
from ..errors import SOMETHING_WENT_WRONG, GemmaChatError, NotLoggedInError, PermissionDeniedError
from ..store.db import User
from ..wording import Message
from .text import language_of, text, translated

SESSION_COOKIE = sessions.SESSION_COOKIE
ACCOUNT_DISABLED = "This account is disabled. Ask an administrator to enable it."  # what a disabled user's page says, not "expired"
SHORT_TEXT = 80  # characters of a prompt or answer shown in a table cell
# What an event that opens a chat changes, whichever part it starts in: the sidebar's list (with its
# notice and open boxes) and the chat screen.
LIST_OUTPUTS = ["chat_list", "sidebar_notice", "rename_row", "delete_row", "target_chat"]
OPENED_CHAT_OUTPUTS = LIST_OUTPUTS + ["chatbot", "turns", "chat_id", "system_prompt", "chat_notice", "settings_notice", "model", "tabs", "shown_versions"]


def session_token(request) -> str | None:
    """The session cookie of the request that triggered an event (None without one)."""
    if request is None:
        return None
    return sessions.session_token((getattr(request, "headers", None) or {}).get("cookie"))  # web/edge.py's parser


def balance_text(user_id: int, language: str = "en") -> str:
    return text(language, "balance", n=ledger.get_balance(user_id).balance)


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


def error_popup(language: str, message: GemmaChatError | Message) -> gr.Error:
    """An error popup (raise it) with a refusal or a message, in `language`, its title too."""
    return gr.Error(translated(language, message), title=text(language, "error_title"), print_exception=False)


def notice(message: str) -> str:
    """A message shown inline, beside what it is about (a Markdown output): the one way a callback
    tells the user about something they can fix, without a popup or a red badge."""
    return f"⚠ {message}" if message else ""


def popup(request, exc: GemmaChatError) -> gr.Error:
    """A refusal as an error popup, in the language of the request."""
    return error_popup(language_of(request), exc)


def shows_errors(callback):
    """For callbacks that answer with a popup: a refusal shows its message, a crash its error id."""

    @functools.wraps(callback)
    def wrapper(self, *args, **kwargs):
        try:
            return self._guarded(callback.__name__, callback, self, *args, **kwargs)
        except GemmaChatError as exc:
            raise popup(request_of(args, kwargs), exc) from None

    return wrapper


class Screen:
    """The session checks, the error guard and the wiring every part's callbacks go through."""

    settings: object
    engine: object
    components: dict
    owned = staticmethod(owned)
    owned_by = staticmethod(owned_by)

    def named(self, callback, outputs: list[str]):
        """A callback that returns (or yields) its outputs by name, as Gradio wants them: by component.

        A refusal the callback raises becomes a popup with its message; an unexpected failure one
        with its error id. (Refusals the user can fix are better returned as a `notice`: a popup
        also marks the event's outputs as failed.)
        """
        components = self.components

        def by_component(result: dict) -> dict:
            changed = {components[name]: value for name, value in result.items() if name in outputs}
            if not changed and outputs:  # Gradio reads an empty dict as one wrong value, not as "nothing changes"
                changed = {components[outputs[0]]: gr.skip()}
            return changed

        if inspect.isgeneratorfunction(callback):

            @functools.wraps(callback)
            def stream(*args, **kwargs):
                try:
                    for result in callback(*args, **kwargs):
                        yield by_component(result)
                except (GemmaChatError, gr.Error) as exc:
                    if isinstance(exc, gr.Error):
                        raise
                    raise popup(request_of(args, kwargs), exc) from None
                except Exception as exc:  # noqa: BLE001
                    error_id = log_error(f"ui:{callback.__name__}", exc)
                    raise error_popup(
                        language_of(request_of(args, kwargs)), Message(SOMETHING_WENT_WRONG, error_id=error_id)
                    ) from exc

            return stream

        @functools.wraps(callback)
        def run(*args, **kwargs):
            try:
                result = self._guarded(callback.__name__, callback, *args, **kwargs)
            except GemmaChatError as exc:
                raise popup(request_of(args, kwargs), exc) from None
            return by_component(result)

        return run

    def wire(self, trigger, callback, inputs: list[str], outputs: list[str], **options):
        c = self.components
        return trigger(self.named(callback, outputs), [c[name] for name in inputs], [c[name] for name in outputs], **options)

    def signed_in(self, request, *, admin: bool = False, touch: bool = True) -> sessions.SignedIn:
        """The request's live session and its user, re-read from the database; raises without one.

        `touch` counts the call as activity, extending the idle timeout.
        """
        token = session_token(request)
        if token is None:
            raise NotLoggedInError("Please log in.")
        found = sessions.resolve_session(self.settings, token, touch=touch)
        if found is None:
            if sessions.ended_because_disabled(token):
                raise NotLoggedInError(ACCOUNT_DISABLED)
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
            raise GemmaChatError(SOMETHING_WENT_WRONG, error_id=log_error(f"ui:{location}", exc)) from exc
