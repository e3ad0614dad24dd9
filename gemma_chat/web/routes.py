"""The routes the app serves, by kind: everything else is refused at the edge before Gradio sees it.

Gradio mounts about a hundred routes (`/gradio_api/call/*`, `/info`, `/openapi.json`, streams, MCP,
vibe editing …); the page uses a handful. The list below is what Chromium requests while a user
signs up, chats, stops an answer, pages history, tops up and uses the Admin tab
(tests/reliability/test_routes.py keeps it honest both ways: the page works with only these, and
every other route of the running app is refused).
"""

from __future__ import annotations

import re
from enum import Enum


class Route(Enum):
    PAGE = "page"  # the page and its files: no session needed, nothing runs
    AUTH = "auth"  # /auth/*: sign-in, registration and log-out (web/app.py)
    API = "api"  # /v1: its own API keys (web/api.py)
    STATEMENT = "statement"  # the signed-in user's CSV (web/app.py checks the cookie)
    RESERVED = "reserved"  # /healthz, /readyz, /metrics: kept for the operator's routes
    EVENT = "event"  # queue/join: runs an event; a live session, the page's own hash, the user's cap
    STREAM = "stream"  # queue/data: an event's answers; a live session and the page's own hash
    PAGE_EVENT = "page_event"  # run/predict: the events outside the queue (page load, session timer, Stop)
    HEARTBEAT = "heartbeat"  # a page's keep-alive; closing it ends the page's events, so it is the page's own
    UPLOAD = "upload"  # refused with 413: the app has no file inputs

GET = frozenset({"GET", "HEAD"})
POST = frozenset({"POST"})

EXACT: dict[str, tuple[Route, frozenset[str]]] = {
    "/": (Route.PAGE, GET),
    "/config": (Route.PAGE, GET),
    "/theme.css": (Route.PAGE, GET),
    "/favicon.ico": (Route.PAGE, GET),
    "/manifest.json": (Route.PAGE, GET),
    "/robots.txt": (Route.PAGE, GET),
    "/gradio_api/startup-events": (Route.PAGE, GET),
    "/gradio_api/theme.css": (Route.PAGE, GET),
    "/auth/login": (Route.AUTH, POST),
    "/auth/register": (Route.AUTH, POST),
    "/auth/logout": (Route.AUTH, POST),
    "/auth/logout-all": (Route.AUTH, POST),
    "/statement.csv": (Route.STATEMENT, GET),
    "/healthz": (Route.RESERVED, GET),
    "/readyz": (Route.RESERVED, GET),
    "/metrics": (Route.RESERVED, GET),
    "/gradio_api/queue/join": (Route.EVENT, POST),
    "/gradio_api/queue/data": (Route.STREAM, GET),
    "/gradio_api/run/predict": (Route.PAGE_EVENT, POST),
    "/gradio_api/upload": (Route.UPLOAD, POST),
}
# Files the page loads: Gradio's built assets, its static files, and the files components show.
PAGE_PREFIXES = ("/assets/", "/static/", "/svelte/", "/gradio_api/file=", "/gradio_api/static/")
HEARTBEAT = re.compile(r"/gradio_api/heartbeat/([^/]+)/?")
ANY_METHOD = frozenset({"GET", "HEAD", "POST", "OPTIONS", "PUT", "PATCH", "DELETE"})


def classify(method: str, path: str) -> Route | None:
    """The kind of an allowed route, or None: not served (404)."""
    if path.startswith("/v1/") or path == "/v1":
        return Route.API
    found = EXACT.get(path)
    if found is not None:
        kind, methods = found
        return kind if method in methods or method == "OPTIONS" else None
    if method in GET and path.startswith(PAGE_PREFIXES) and ".." not in path:
        return Route.PAGE
    if method in GET and HEARTBEAT.fullmatch(path):
        return Route.HEARTBEAT
    return None


def heartbeat_session(path: str) -> str | None:
    match = HEARTBEAT.fullmatch(path)
    return match.group(1) if match else None
