"""The edge in process: the queue's door looks a session up once for a page's join and its stream.

The edge's refusals themselves are tested against the running app (tests/reliability/test_edge.py).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from conftest import run_in_own_loop
from gemma_chat.config import load_settings
from gemma_chat.web import edge as edge_module
from gemma_chat.web.edge import LIVE_SESSION_MEMO_S, Edge

COOKIE = "gemma_session"


def running_in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def inner(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def request(edge: Edge, path: str, cookie: str) -> int:
    body = json.dumps({"session_hash": "page1", "fn_index": 0, "data": []}).encode()
    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"", "scheme": "http",
             "client": ("127.0.0.1", 5), "headers": [(b"host", b"127.0.0.1"), (b"cookie", f"{COOKIE}={cookie}".encode())]}
    statuses = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    run_in_own_loop(edge(scope, receive, send))
    return statuses[0]


# PostgreSQL: the lookup is a network round trip, made in a worker thread instead of the event loop.
@pytest.mark.parametrize("database_url", ["", "postgresql://db.example/gemma"])
def test_a_live_session_is_looked_up_once_a_second_and_an_ended_one_is_refused_after(monkeypatch, tmp_path, database_url):
    live = {"token-of-twenty-chars-or-more": True}
    lookups = []
    def has_live_session(token):
        lookups.append((token, running_in_event_loop()))
        return live.get(token, False)

    clock = [1000.0]
    monkeypatch.setattr(edge_module.time, "monotonic", lambda: clock[0])
    settings = load_settings(data_dir=tmp_path, env={}, database_url=database_url)
    edge = Edge(inner, settings, cookie_name=COOKIE, has_live_session=has_live_session)
    token = "token-of-twenty-chars-or-more"

    assert request(edge, "/gradio_api/queue/join", token) == 200
    assert request(edge, "/gradio_api/queue/data", token) == 200
    assert len(lookups) == 1  # the stream right after its join: no second lookup
    assert lookups[0][1] is not bool(database_url)

    live[token] = False  # logged out
    clock[0] += LIVE_SESSION_MEMO_S + 0.01
    assert request(edge, "/gradio_api/queue/join", token) == 401
    assert request(edge, "/gradio_api/queue/join", "another-token-never-signed-in") == 403  # bound to the first cookie
    assert len(lookups) == 2


def test_an_address_over_its_sign_in_limit_is_refused_before_the_app_sees_the_request(tmp_path):
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])
        await inner(scope, receive, send)

    waits = {"127.0.0.1": 7}
    edge = Edge(app, load_settings(data_dir=tmp_path, env={}), cookie_name=COOKIE,
                has_live_session=lambda token: False, signin_retry_after=lambda client: waits.get(client, 0))
    status, headers, body = post_raw(edge, "/auth/login")
    assert status == 429 and headers[b"retry-after"] == b"7" and reached == []
    assert json.loads(body) == {"ok": False, "message": "Too many sign-in attempts; try again in 7 s."}
    waits.clear()  # the window has passed
    assert post_raw(edge, "/auth/login")[0] == 200 and reached == ["/auth/login"]


def post_raw(edge: Edge, path: str) -> tuple[int, dict, bytes]:
    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"", "scheme": "http",
             "client": ("127.0.0.1", 5), "headers": [(b"host", b"127.0.0.1")]}
    response = {"body": b""}

    async def receive():
        return {"type": "http.request", "body": b'{"username": "a", "password": "b"}', "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            response["status"], response["headers"] = message["status"], dict(message["headers"])
        else:
            response["body"] += message.get("body", b"")

    run_in_own_loop(edge(scope, receive, send))
    return response["status"], response["headers"], response["body"]
