"""A minimal Gradio client speaking the app's own HTTP protocol: one object is one browser session.

gradio_client hides what these tests must control: every event is called by its index in the app's
/config (so hidden and unnamed endpoints are reached too, exactly as a hostile client could), with
any data, and the answer is the raw outcome — the final outputs, or the error the server sent.
State inputs are sent as None: the server keeps State per session and ignores what a client sends.

Signing in is not a Gradio event: it posts to the app's /auth routes, which set the HttpOnly session
cookie this client then sends with every call, and starts a new session_hash (the browser reloads).
`local_address` binds the client's socket to another loopback address (127.0.0.2 …), so that the
app sees a different client IP.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Outcome:
    ok: bool  # the event ran to completion without an error
    data: list | None = None  # the final outputs
    error: str | None = None  # the error message shown to the user (gr.Error), or the HTTP refusal
    status_code: int = 200
    generating: int = 0  # how many streamed updates arrived before the end
    events: list = field(default_factory=list)


def fetch_config(url: str) -> dict:
    response = httpx.get(url + "config", timeout=30)
    response.raise_for_status()
    return response.json()


def endpoint_index(config: dict, api_name: str) -> int:
    for index, dependency in enumerate(config["dependencies"]):
        if dependency.get("api_name") == api_name:
            return index
    raise KeyError(api_name)


def placeholder(component: dict, dropdown: str | None = None) -> Any:
    """A harmless value of the right shape for an input component.

    A dropdown gets `dropdown`: its choices are set per session at sign-in, and Gradio itself refuses
    a value outside them before any handler runs.
    """
    kind = component["type"]
    if kind == "state":
        return None
    if kind == "number":
        return 5
    if kind == "chatbot":
        return []
    if kind == "dropdown":
        return dropdown
    return "x"


KEEPALIVE_EXPIRY_S = 2.0


class GradioSession:
    def __init__(self, url: str, config: dict | None = None, *, timeout: float = 120, local_address: str | None = None):
        self.url = url
        self.config = config or fetch_config(url)
        self.components = {c["id"]: c for c in self.config["components"]}
        self.session_hash = uuid.uuid4().hex
        # Idle connections are dropped before the server's keep-alive (5 s) can close one under a
        # request already on its way: a browser retries such a reset, this client would not.
        limits = httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S)
        transport = httpx.HTTPTransport(local_address=local_address, limits=limits) if local_address else None
        self.http = httpx.Client(timeout=timeout, transport=transport, limits=limits)
        self._lock = threading.Lock()  # one event at a time per session, as in a browser tab
        self._loaded = True  # a fresh client is a page whose load event has no effect (no cookie)

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- raw calls ---

    def call(self, endpoint: int | str, *data: Any, event_data: Any = None, on_update=None) -> Outcome:
        """Run one event to its end. `endpoint` is an api_name or a dependency index."""
        index = endpoint if isinstance(endpoint, int) else endpoint_index(self.config, endpoint)
        dependency = self.config["dependencies"][index]
        if not self._loaded and dependency.get("api_name") != "restore":
            self.restore()  # the reloaded page's load event: shows the app, sets the model choices
        body = {
            "data": list(data),
            "fn_index": index,
            "session_hash": self.session_hash,
            "event_data": event_data,
            "trigger_id": dependency["targets"][0][0] if dependency["targets"] else None,
        }
        return self.send(body, on_update=on_update)

    def send(self, body: dict, *, on_update=None) -> Outcome:
        """Post an event's body as the page does (queue/join and its stream, or run/predict for the
        events outside the queue), whatever its shape: a hostile client's body too."""
        dependency = self.config["dependencies"][body["fn_index"]]
        # ASCII JSON, as a browser's JSON.stringify sends it: a lone surrogate travels as "\\ud800".
        content, headers = json.dumps(body), {"content-type": "application/json"}
        with self._lock:
            if not dependency.get("queue", True):
                response = self.http.post(self.url + "gradio_api/run/predict", content=content, headers=headers)
                payload = response.json()
                if response.status_code != 200:
                    error = payload.get("error") or payload.get("detail")  # a handler's error, or the edge's refusal
                    return Outcome(False, error=error, status_code=response.status_code)
                return Outcome(True, data=payload["data"])
            joined = self.http.post(self.url + "gradio_api/queue/join", content=content, headers=headers)
            if joined.status_code != 200:
                return Outcome(False, error=joined.json().get("detail", joined.text), status_code=joined.status_code)
            event_id = joined.json()["event_id"]
            outcome = Outcome(False)
            with self.http.stream("GET", self.url + "gradio_api/queue/data", params={"session_hash": self.session_hash}) as stream:
                for line in stream.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    message = json.loads(line[5:])
                    if message.get("event_id") not in (None, event_id):
                        continue
                    outcome.events.append(message.get("msg"))
                    if message.get("msg") == "process_generating":
                        outcome.generating += 1
                        if on_update is not None:
                            on_update(outcome.generating)
                    elif message.get("msg") == "process_completed":
                        output = message.get("output") or {}
                        outcome.ok = bool(message.get("success"))
                        outcome.data = output.get("data")
                        outcome.error = output.get("error") if not outcome.ok else None
                        return outcome
                    elif message.get("msg") == "unexpected_error":
                        outcome.error = message.get("message")
                        return outcome
            outcome.error = outcome.error or "the event stream ended without a result"
            return outcome

    def call_with_placeholders(self, index: int, *, dropdown: str | None = None) -> Outcome:
        dependency = self.config["dependencies"][index]
        data = [placeholder(self.components[i], dropdown) for i in dependency["inputs"]]
        event_data = {"index": [0, 0], "value": "x", "selected": True} if dependency.get("collects_event_data") else None
        return self.call(index, *data, event_data=event_data)

    # --- what a user does ---

    def post_form(self, route: str, username, password) -> httpx.Response:
        """What the sign-in form's buttons do in the browser: POST /auth/<route> with the form as JSON."""
        content = json.dumps({"username": username, "password": password})
        return self.http.post(self.url + "auth/" + route, content=content, headers={"content-type": "application/json"})

    def _sign_in(self, route: str, username, password) -> str:
        response = self.post_form(route, username, password)
        body = response.json()
        assert isinstance(body, dict) and "message" in body, (response.status_code, response.text)
        if response.status_code == 200 and body.get("ok"):
            assert "gemma_session" in self.http.cookies, response.headers
            self.session_hash = uuid.uuid4().hex  # the page reloads after signing in...
            self._loaded = False
            self.restore()  # ...and its load event runs at once, before the user can act on it
            return ""
        return body["message"]

    def register(self, username, password="long enough pw") -> str:
        """The message shown under the form; empty when signed in."""
        return self._sign_in("register", username, password)

    def login(self, username, password="long enough pw") -> str:
        return self._sign_in("login", username, password)

    def logout(self, *, everywhere: bool = False) -> None:
        response = self.http.post(self.url + ("auth/logout-all" if everywhere else "auth/logout"))
        assert response.status_code == 200, response.text
        self.session_hash = uuid.uuid4().hex

    def restore(self) -> list:
        """The page's load event: the signed-in screen for a live session cookie, else the form."""
        self._loaded = True
        outcome = self.call("restore")
        assert outcome.ok, outcome.error
        return outcome.data

    def sign_in_outputs(self, username: str, password: str = "long enough pw", *, register: bool = False) -> list:
        """Sign in, then what the reloaded page shows (the load event's outputs)."""
        message = self.register(username, password) if register else self.login(username, password)
        assert message == "", message
        return self.restore()

    def chat(self, tier: str, message: str, **kwargs) -> "ChatReply":
        # model, message, chatbot, context State, the chat's system prompt (ui/chat.py CHAT_OUTPUTS for the outputs)
        return ChatReply.of(self.call("chat", tier, message, [], None, "", **kwargs))

    def top_up(self, amount) -> str:
        outcome = self.call("top_up", amount)
        assert outcome.ok, outcome.error
        return outcome.data[0]


CHARGED = re.compile(r"· (\d+) credits?(?:</span>\u2063)?$")  # the footer ends its element (ui/markup.py FOOTER_CLOSE)
BALANCE = re.compile(r"Balance: (\d+) credits?")


@dataclass
class ChatReply:
    outcome: Outcome
    text: str = ""  # the notice beside the box, if any, then the answer bubble as the user sees it (or the error popup's text)
    charged: int | None = None  # credits in the bubble's footer; None when there is no footer
    balance: int | None = None  # the balance shown after the turn
    notice: str = ""  # what the page says beside the box: a refusal's reason ("⚠ …"), a low balance

    @classmethod
    def of(cls, outcome: Outcome) -> "ChatReply":
        if not outcome.ok:
            return cls(outcome, text=outcome.error or "")
        chatbot, _, balance, _, _, _, notice, *_ = outcome.data
        notice = notice if isinstance(notice, str) else ""
        content = chatbot[-1]["content"] if isinstance(chatbot, list) and chatbot else ""
        text = "".join(part.get("text", "") for part in content) if isinstance(content, list) else str(content)
        charged = CHARGED.search(text)
        shown = BALANCE.search(balance) if isinstance(balance, str) else None
        text = f"{notice}\n\n{text}" if notice and text else notice or text
        return cls(outcome, text, int(charged.group(1)) if charged else None, int(shown.group(1)) if shown else None, notice)
