"""The edge: what every HTTP request passes before it reaches Gradio, /auth, /v1 or /statement.csv.

One ASGI middleware, so its order is plain to read; each step answers before the next reads more:
1. Host: only the names the app is reached by (hosts.py). A page on another name that resolves to
   127.0.0.1 (DNS rebinding) gets 400, before anything else;
2. at most one session cookie (a second one, set by a page on another port with a narrower Path,
   would make the edge and the handlers disagree on who is asking) → 400;
3. requests from another origin may only load the page's files, never run or change anything, and
   get no CORS permission → 403. Origin is compared as (scheme, host, port), and Sec-Fetch-Site is
   believed where the browser sends it;
4. default deny: only the routes in routes.py are served → 404 (uploads 413); Gradio's other
   routes (/gradio_api/call/*, /info, /openapi.json …) never see a request;
5. an address over its sign-in limit is refused before the /auth routes read a byte → 429;
6. Gradio's event routes: the queue and its stream need a live session; a session_hash belongs to
   the first cookie it was accepted with, and is bound only once that cookie is accepted (refused
   requests leave nothing behind); an account has at most `events_per_user` events queued or
   running, over all its pages → 401 / 403 / 429;
7. the security headers go on every response; a request that crashes the stack gets a short answer,
   and the traceback goes to the log file, never to stdout (an event that fails inside Gradio is
   answered the same way by ui/blocks.py).

The client's address and scheme are the socket's, or the nearest trusted proxy's X-Forwarded-*
(uvicorn's ProxyHeadersMiddleware, wrapped around this one by web/app.py only when told to).
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
import time
import types
from typing import Callable, Iterable
from urllib.parse import parse_qs

import anyio

from ..accounts import sessions
from ..config import Settings
from ..ops.error_log import logger
from ..ui.text import language_of, translated
from ..wording import Message
from .hosts import HostNames, is_foreign
from .routes import Route, classify, heartbeat_session

TOO_MANY_SIGN_INS = "Too many sign-in attempts; try again in {seconds} s."
SECURITY_HEADERS = [
    (b"content-security-policy", b"frame-ancestors 'self'; object-src 'none'; base-uri 'self'; form-action 'self'"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
SECURITY_HEADER_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)
MAX_JSON_BODY = 8 * 1024 * 1024  # a chat message is at most max_message_chars; this is far above it
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# A page's queue/join and its queue/data stream come milliseconds apart: one session lookup serves
# both. Every handler still checks the session itself, so a session ended within the last second
# gets into the queue and is refused there.
LIVE_SESSION_MEMO_S = 1.0
LIVE_SESSION_MEMO_MAX = 10_000
# The routes a page may call without a live session: its load event, the session timer and Stop
# (which show the sign-in form and nothing else without one), and its files.
NO_SESSION_NEEDED = {Route.PAGE, Route.AUTH, Route.API, Route.STATEMENT, Route.RESERVED, Route.PAGE_EVENT, Route.HEARTBEAT}


class SessionHashBindings:
    """Which cookie (and account) each Gradio session_hash was first accepted with.

    Bounded: the least recently used hashes go first (Gradio's own state holder is bounded too);
    a hash seen again after its binding is gone is bound afresh. Only requests with a live session
    bind, so anonymous clients cannot churn the table.
    """

    def __init__(self, max_entries: int = 100_000, idle_s: float = 6 * 3600):
        self.max_entries = max_entries
        self.idle_s = idle_s
        self._bound: collections.OrderedDict[str, tuple[str, int, float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def owner(self, session_hash: str) -> tuple[str, int] | None:
        """(cookie identity, user id) the hash is bound to, or None."""
        bound = self._bound.get(session_hash)
        if bound is None or time.monotonic() - bound[2] >= self.idle_s:
            return None
        return bound[0], bound[1]

    def allows(self, session_hash: str, identity: str) -> bool:
        """Is the hash free, or already this cookie's? (Reads only.)"""
        owner = self.owner(session_hash)
        return owner is None or owner[0] == identity

    def bind(self, session_hash: str, identity: str, user_id: int) -> bool:
        """Bind the hash to this cookie unless another one holds it; False when another does."""
        now = time.monotonic()
        with self._lock:
            bound = self._bound.get(session_hash)
            if bound is not None and now - bound[2] < self.idle_s and bound[0] != identity:
                return False
            self._bound[session_hash] = (identity, user_id, now)
            self._bound.move_to_end(session_hash)
            while len(self._bound) > self.max_entries:
                self._bound.popitem(last=False)
            return True

    def __len__(self) -> int:
        return len(self._bound)


async def respond(send, status: int, detail: str, extra_headers=(), *, shape: str = "detail") -> None:
    """A short JSON answer: {"detail": …} as FastAPI writes errors, or {"ok": false, "message": …}
    as the /auth routes answer (shape="auth"), so the sign-in form shows it."""
    payload = {"ok": False, "message": detail} if shape == "auth" else {"detail": detail}
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + SECURITY_HEADERS + list(extra_headers)})
    await send({"type": "http.response.body", "body": body})


def client_address(scope) -> str:
    """The peer's address (a trusted proxy's X-Forwarded-For is already in scope["client"])."""
    client = scope.get("client")
    return client[0] if client else "unknown"


def identity_of(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8", "surrogatepass")).hexdigest()


class Edge:
    """ASGI middleware in front of the whole app (see the module docstring)."""

    def __init__(
        self, app, settings: Settings, *, live_user: Callable[[str], int | None],
        signin_retry_after: Callable[[str], int] = lambda client: 0,
        queued_sessions: Callable[[], Iterable[str]] = lambda: (),
        host_names: HostNames | None = None,
    ):
        self.app = app
        self.settings = settings
        self.live_user = live_user  # a cookie's token -> the user id of its live session, or None
        self.signin_retry_after = signin_retry_after  # seconds an address must wait to sign in (0: now)
        self.queued_sessions = queued_sessions  # the session_hash of every event queued or running
        self.host_names = host_names or HostNames.for_server("127.0.0.1", settings.allowed_hosts)
        self.bindings = SessionHashBindings()
        self.recently_live: dict[str, tuple[float, int]] = {}  # identity -> (until, user id); the event loop's alone

    async def user_of(self, cookie: str, identity: str) -> int | None:
        """The cookie's live session's user, looked up at most once a second per cookie."""
        now = time.monotonic()
        memo = self.recently_live.get(identity)
        if memo is not None and memo[0] > now:
            return memo[1]
        if self.settings.database_url:
            # A round trip to a PostgreSQL server must not stall every other request: a worker thread.
            user_id = await anyio.to_thread.run_sync(self.live_user, cookie)
        else:
            # SQLite: in the event loop, one indexed read of a WAL database (≈0.05 ms), where waking
            # a thread cost 0.3 ms, and milliseconds on busy cores (bench edge).
            user_id = self.live_user(cookie)
        if user_id is None:
            return None
        if len(self.recently_live) >= LIVE_SESSION_MEMO_MAX:
            self.recently_live = {k: memo for k, memo in self.recently_live.items() if memo[0] > now}
            if len(self.recently_live) >= LIVE_SESSION_MEMO_MAX:
                self.recently_live.clear()
        self.recently_live[identity] = (now + LIVE_SESSION_MEMO_S, user_id)
        return user_id

    def events_of(self, user_id: int) -> int:
        """The account's events queued or running now, over all the pages bound to it."""
        count = 0
        for session_hash in self.queued_sessions():
            owner = self.bindings.owner(session_hash)
            if owner is not None and owner[1] == user_id:
                count += 1
        return count

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope.get("headers") or []
        host = origin = fetch_site = cookie_header = None
        for name, value in headers:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"sec-fetch-site":
                fetch_site = value.decode("latin-1")
            elif name == b"cookie":
                # Several Cookie lines (HTTP/2 proxies split them) are one header, as browsers mean it.
                cookie_header = value.decode("latin-1") if cookie_header is None else f"{cookie_header}; {value.decode('latin-1')}"
        method, path = scope["method"], scope["path"]

        if not self.host_names.allows(host):
            return await respond(send, 400, "Unknown host.")
        cookies = sessions.session_cookies(cookie_header)
        if len(cookies) > 1:
            return await respond(send, 400, "Two session cookies were sent; clear this site's cookies and sign in again.")
        cookie = cookies[0] if cookies and cookies[0] else None

        route = classify(method, path)
        foreign = is_foreign(scope.get("scheme", "http"), host, origin, fetch_site)
        if foreign and (method not in SAFE_METHODS or method == "OPTIONS" or route is not Route.PAGE):
            return await respond(send, 403, "Requests from another site are refused.")
        if route is None:
            return await respond(send, 404, "Not found.")
        if route is Route.UPLOAD:
            return await respond(send, 413, "This app accepts no uploads.")

        if route is Route.AUTH and method == "POST" and path in ("/auth/login", "/auth/register"):
            # An address over its sign-in limit is refused here, before FastAPI routes the request
            # or reads its body: during a flood, each refusal takes as little of the event loop as it can.
            if wait := self.signin_retry_after(client_address(scope)):
                # The sign-in form shows it: in the browser's language, as the /auth routes answer.
                reader = types.SimpleNamespace(headers={"accept-language": _header(headers, b"accept-language")})
                message = translated(language_of(reader), Message(TOO_MANY_SIGN_INS, seconds=wait))
                return await respond(send, 429, message, [(b"retry-after", str(wait).encode())], shape="auth")

        if route in (Route.EVENT, Route.STREAM, Route.PAGE_EVENT, Route.HEARTBEAT):
            refusal, receive = await self.check_page_request(scope, receive, route, cookie)
            if refusal is not None:
                return await respond(send, *refusal)

        await self.forward(scope, receive, send, method, path, strip_cors=foreign)

    async def check_page_request(self, scope, receive, route: Route, cookie: str | None):
        """A Gradio page's request: (status, message) to refuse it, or None; and the receive to pass on."""
        session_hash = heartbeat_session(scope["path"]) if route is Route.HEARTBEAT else None
        if route is Route.STREAM:
            session_hash = _query_value(scope, "session_hash")
        user_id = identity = None
        if cookie is not None:
            identity = identity_of(cookie)
            user_id = await self.user_of(cookie, identity)
        if user_id is None and route not in NO_SESSION_NEEDED:
            return (401, "Please log in."), receive
        if scope["method"] == "POST":
            body = await _read_body(receive)
            if body is None:
                return (413, "The request is too large."), receive
            receive = _replay(body, receive)
            try:
                payload = json.loads(body) if body else None
            except (ValueError, UnicodeDecodeError):
                payload = None
            if isinstance(payload, dict) and isinstance(payload.get("session_hash"), str):
                session_hash = payload["session_hash"]
        if session_hash is None:
            return None, receive
        if user_id is None:
            # Without a session the page's load event, timer and Stop only show the sign-in form, so
            # they may use any hash: that is how a page goes on after Log out. A heartbeat may not use
            # a signed-in page's hash: closing it would end that page's events.
            if route is Route.HEARTBEAT and self.bindings.owner(session_hash) is not None:
                return (403, "This page belongs to another sign-in; reload the page."), receive
            return None, receive
        if not self.bindings.allows(session_hash, identity):
            return (403, "This page belongs to another sign-in; reload the page."), receive
        if route is Route.EVENT and self.events_of(user_id) >= self.settings.events_per_user:
            return (429, f"You have {self.settings.events_per_user} requests waiting or running; wait for one to finish."), receive
        if not self.bindings.bind(session_hash, identity, user_id):  # accepted: now the hash is this cookie's
            return (403, "This page belongs to another sign-in; reload the page."), receive
        return None, receive

    async def forward(self, scope, receive, send, method: str, path: str, *, strip_cors: bool) -> None:
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                kept = [
                    (k, v) for k, v in message.get("headers", [])
                    if not (strip_cors and k.lower().startswith(b"access-control-"))
                    and k.lower() not in SECURITY_HEADER_NAMES
                ]
                message = {**message, "headers": kept + SECURITY_HEADERS}
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:  # noqa: BLE001 — the edge answers for the whole stack
            logger.exception("request %s %s failed", method, path[:200])
            if not started:
                await respond(send, 500 if not path.startswith("/gradio_api/") else 400, "The request could not be handled.")


def _header(headers, name: bytes) -> str:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return ""


def _query_value(scope, name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None


async def _read_body(receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_JSON_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
