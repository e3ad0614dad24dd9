"""The edge: what every HTTP request passes before it reaches Gradio or the /auth routes.

One ASGI middleware, so its order is plain to read:
1. the security headers go on every response (no framing, no sniffing, no referrer);
2. requests from another origin may not change anything, and get no CORS permission; an address
   over its sign-in limit is refused before the /auth routes read a byte;
3. uploads are refused (the app has no file inputs) and deep links are not served (a link would
   carry the page's session);
4. a Gradio session_hash belongs to the cookie it was first used with: replaying a signed-in
   browser's hash without its cookie (or with another one) is refused, so nobody else can read its
   stream or its gr.State;
5. only a signed-in browser may join the queue or read its stream: anonymous clients cannot fill it;
6. a request that crashes the stack gets a short answer, and the traceback goes to the log file,
   not to stdout.

/v1 (web/api.py) passes steps 3-5 untouched: it authenticates each request by its API key, never
by the cookie, so there is no session to bind. It still gets the headers, and browsers on other
sites are still refused (step 2): only clients that send no foreign Origin (scripts, SDKs) call it.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
import time
import types
from typing import Callable
from urllib.parse import parse_qs

import anyio

from ..config import Settings
from ..error_log import logger
from ..ui.text import language_of, translated

SIGNIN_PATHS = frozenset({"/auth/login", "/auth/register"})

SECURITY_HEADERS = [
    (b"content-security-policy", b"frame-ancestors 'self'; object-src 'none'; base-uri 'self'; form-action 'self'"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
MAX_JSON_BODY = 8 * 1024 * 1024  # a chat message is at most max_message_chars; this is far above it
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# A page's queue/join and its queue/data stream come milliseconds apart: one session lookup serves
# both. Only the queue's door uses this; every handler still checks the session itself, so a session
# ended within the last second gets into the queue and is refused there.
LIVE_SESSION_MEMO_S = 1.0
LIVE_SESSION_MEMO_MAX = 10_000


class SessionHashBindings:
    """Which cookie each Gradio session_hash was first used with, for the life of a page.

    Bounded: the least recently used hashes go first (Gradio's own state holder is bounded too);
    a hash seen again after its binding is gone is bound afresh.
    """

    def __init__(self, max_entries: int = 100_000, idle_s: float = 6 * 3600):
        self.max_entries = max_entries
        self.idle_s = idle_s
        self._bound: collections.OrderedDict[str, tuple[str, float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def allows(self, session_hash: str, identity: str) -> bool:
        now = time.monotonic()
        with self._lock:
            bound = self._bound.get(session_hash)
            if bound is not None and now - bound[1] < self.idle_s and bound[0] != identity:
                return False
            self._bound[session_hash] = (identity, now)
            self._bound.move_to_end(session_hash)
            while len(self._bound) > self.max_entries:
                self._bound.popitem(last=False)
            return True


def cookie_value(headers: dict[bytes, bytes], name: str) -> str | None:
    raw = headers.get(b"cookie", b"").decode("latin-1")
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def client_address(scope, headers: dict[bytes, bytes], settings: Settings) -> str:
    """The socket's peer; X-Forwarded-For only when the app is told it sits behind a proxy."""
    if settings.trust_proxy_headers:
        forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1")
        if forwarded.strip():
            return forwarded.split(",")[-1].strip()  # the address the nearest proxy saw
    client = scope.get("client")
    return client[0] if client else "unknown"


def request_scheme(scope, headers: dict[bytes, bytes], settings: Settings) -> str:
    if settings.trust_proxy_headers:
        proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            return proto
    return scope.get("scheme", "http")


def own_origin(scope, headers: dict[bytes, bytes], settings: Settings) -> str:
    host = headers.get(b"host", b"").decode("latin-1")
    if settings.trust_proxy_headers and headers.get(b"x-forwarded-host"):
        host = headers[b"x-forwarded-host"].decode("latin-1").split(",")[0].strip()
    return f"{request_scheme(scope, headers, settings)}://{host}".lower()


async def respond(send, status: int, detail: str, extra_headers=(), *, shape: str = "detail") -> None:
    """A short JSON answer: {"detail": …} as FastAPI writes errors, or {"ok": false, "message": …}
    as the /auth routes answer (shape="auth"), so the sign-in form shows it."""
    payload = {"ok": False, "message": detail} if shape == "auth" else {"detail": detail}
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + SECURITY_HEADERS + list(extra_headers)})
    await send({"type": "http.response.body", "body": body})


class Edge:
    """ASGI middleware in front of the whole app (see the module docstring)."""

    def __init__(
        self, app, settings: Settings, *, cookie_name: str, has_live_session: Callable[[str], bool],
        signin_retry_after: Callable[[str], int] = lambda client: 0,
    ):
        self.app = app
        self.settings = settings
        self.cookie_name = cookie_name
        self.has_live_session = has_live_session
        self.signin_retry_after = signin_retry_after  # seconds an address must wait to sign in (0: now)
        self.bindings = SessionHashBindings()
        self.recently_live: dict[str, float] = {}  # cookie digest -> until (monotonic); the event loop's alone

    async def is_live(self, cookie: str, identity: str) -> bool:
        now = time.monotonic()
        if self.recently_live.get(identity, 0.0) > now:
            return True
        if self.settings.database_url:
            # A round trip to a PostgreSQL server must not stall every other request: a worker thread.
            live = await anyio.to_thread.run_sync(self.has_live_session, cookie)
        else:
            # SQLite: in the event loop, one indexed read of a WAL database (≈0.05 ms), where waking
            # a thread cost 0.3 ms, and milliseconds on busy cores (bench edge).
            live = self.has_live_session(cookie)
        if not live:
            return False
        if len(self.recently_live) >= LIVE_SESSION_MEMO_MAX:
            self.recently_live = {k: until for k, until in self.recently_live.items() if until > now}
            if len(self.recently_live) >= LIVE_SESSION_MEMO_MAX:
                self.recently_live.clear()
        self.recently_live[identity] = now + LIVE_SESSION_MEMO_S
        return True

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        method = scope["method"]
        path = scope["path"]
        origin = headers.get(b"origin", b"").decode("latin-1").lower() or None
        foreign = origin is not None and origin != own_origin(scope, headers, self.settings)
        if foreign and method not in SAFE_METHODS:
            return await respond(send, 403, "Requests from another site are refused.")
        if foreign and method == "OPTIONS":
            return await respond(send, 403, "Requests from another site are refused.")

        if method == "POST" and path in SIGNIN_PATHS:
            # An address over its sign-in limit is refused here, before FastAPI routes the request
            # or reads its body: during a flood, each refusal takes as little of the event loop as it can.
            if wait := self.signin_retry_after(client_address(scope, headers, self.settings)):
                # The sign-in form shows it: in the browser's language, as the /auth routes answer.
                reader = types.SimpleNamespace(headers={"accept-language": headers.get(b"accept-language", b"").decode("latin-1")})
                message = translated(language_of(reader), f"Too many sign-in attempts; try again in {wait} s.")
                return await respond(send, 429, message, [(b"retry-after", str(wait).encode())], shape="auth")

        gradio = "/gradio_api/" in path
        if gradio and path.endswith("/upload"):
            return await respond(send, 413, "This app accepts no uploads.")
        if gradio and path.endswith("/deep_link"):
            return await respond(send, 404, "Not found.")

        if gradio:
            cookie = cookie_value(headers, self.cookie_name)
            identity = hashlib.sha256(cookie.encode("latin-1")).hexdigest() if cookie else "-"
            session_hash = None
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if query.get("session_hash"):
                session_hash = query["session_hash"][0]
            elif "/heartbeat/" in path:
                session_hash = path.rsplit("/heartbeat/", 1)[1].strip("/")
            if method == "POST":
                body = await self._read_body(receive)
                if body is None:
                    return await respond(send, 413, "The request is too large.")
                receive = _replay(body, receive)
                try:
                    payload = json.loads(body) if body else None
                except (ValueError, UnicodeDecodeError):
                    payload = None
                if isinstance(payload, dict) and isinstance(payload.get("session_hash"), str):
                    session_hash = payload["session_hash"]
            # Without a cookie, events outside the queue (/run/predict: the load event, the session
            # timer, Stop) do nothing but show the sign-in form, so they may use a page's hash: that
            # is how a page goes on after Log out. Everything that reads a page's stream or State
            # goes through the queue, which needs the very cookie the hash was first used with.
            cookieless_no_op = identity == "-" and path.endswith("/run/predict")
            if session_hash is not None and not cookieless_no_op and not self.bindings.allows(session_hash, identity):
                return await respond(send, 403, "This page belongs to another sign-in; reload the page.")
            if path.endswith(("/queue/join", "/queue/data")):  # the queue is for signed-in pages only
                live = bool(cookie) and await self.is_live(cookie, identity)
                if not live:
                    return await respond(send, 401, "Please log in.")

        strip_cors = foreign

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                kept = [
                    (k, v) for k, v in message.get("headers", [])
                    if not (strip_cors and k.lower().startswith(b"access-control-"))
                    and k.lower() not in {name for name, _ in SECURITY_HEADERS}
                ]
                message = {**message, "headers": kept + SECURITY_HEADERS}
                started.append(True)
            await send(message)

        started: list[bool] = []
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:  # noqa: BLE001 — the edge answers for the whole stack
            logger.exception("request %s %s failed", method, path[:200])
            if not started:
                await respond(send, 500 if not gradio else 400, "The request could not be handled.")

    async def _read_body(self, receive) -> bytes | None:
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

