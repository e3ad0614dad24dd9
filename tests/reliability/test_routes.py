"""Default deny, route by route: every route the app mounts (read from the app itself, so a route a
later Gradio adds is tried too) is called on the running app without a cookie and with a signed-in
one. A route off the allow-list (gemma_chat/web/routes.py) must be 404 either way; the event routes
need a live session; nothing answers 500 or prints a traceback (issue 21, findings A, F and I).
"""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from starlette.routing import Mount, Route as StarletteRoute

from gemma_chat.web.app import create_app
from gemma_chat.web.routes import Route, classify

from .conftest import start_app
from .gradio_http import GradioSession

pytestmark = pytest.mark.slow

PARAMETER = re.compile(r"\{([^}:]+)(:[^}]+)?\}")
EXAMPLES = {"api_name": "top_up", "session_hash": uuid.uuid4().hex, "event_id": "x", "path": "x.js", "size": "192"}


def mounted_routes(app, prefix: str = "") -> list[tuple[str, str]]:
    """(method, path) of every route of a Starlette app, mounts included, parameters filled in."""
    found = []
    for route in app.routes:
        if hasattr(route, "original_router"):  # FastAPI's include_router keeps the router itself
            context_prefix = getattr(getattr(route, "include_context", None), "prefix", "") or ""
            found += mounted_routes(route.original_router, prefix + context_prefix)
        elif isinstance(route, Mount):
            inner = route.app if hasattr(route.app, "routes") else getattr(route, "app", None)
            found += mounted_routes(inner, prefix + route.path) if inner is not None else []
        elif isinstance(route, StarletteRoute) or hasattr(route, "methods"):
            path = PARAMETER.sub(lambda m: EXAMPLES.get(m.group(1), "x"), prefix + route.path)
            for method in sorted(route.methods or {"GET"}):
                found.append((method, path or "/"))
    return sorted(set(found))


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    app = start_app(tmp_path_factory.mktemp("routes"))
    yield app
    app.stop()


def test_every_route_off_the_allow_list_is_refused_without_and_with_a_cookie(running, chat_settings, demo_engine):
    routes = mounted_routes(create_app(chat_settings, demo_engine).fastapi)
    assert len(routes) > 80, routes  # Gradio's own routes are in the list, not only ours
    signed_in = GradioSession(running.url)
    assert signed_in.register("router") == ""
    log_before = running.log_path.read_text()
    refused, served = [], []
    with httpx.Client(timeout=10) as anonymous:
        for method, path in routes:
            kind = classify(method, path)
            if method == "HEAD" or kind in (Route.PAGE, Route.AUTH, Route.API, Route.STATEMENT, Route.RESERVED, Route.HEARTBEAT):
                served.append((method, path))
                continue
            body = {"data": [5], "fn_index": 0, "session_hash": uuid.uuid4().hex}
            for client in (anonymous, signed_in.http):
                response = client.request(method, running.url.rstrip("/") + path, json=body if method != "GET" else None)
                cookie = client is signed_in.http
                if kind is None:
                    assert response.status_code == 404, (method, path, cookie, response.status_code, response.text[:200])
                elif kind is Route.UPLOAD:
                    assert response.status_code == 413, (method, path)
                elif kind in (Route.EVENT, Route.STREAM) and not cookie:
                    assert response.status_code == 401, (method, path, response.status_code)
                assert response.status_code < 500, (method, path, cookie, response.status_code, response.text[:200])
            refused.append((method, path))
    assert ("POST", "/gradio_api/call/top_up") in refused and ("GET", "/gradio_api/info") in refused
    assert len(refused) > 50
    assert "Traceback" not in running.log_path.read_text()[len(log_before):]
