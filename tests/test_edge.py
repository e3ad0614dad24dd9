"""The edge in process: its answers to requests a browser or an attacker sends, over a stand-in app.

The same refusals are tested against the running app from the attacker's side in
tests/reliability/test_edge.py; here each rule is checked alone, fast, with the inner app recording
what reached it.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from conftest import run_in_own_loop
from gemma_chat.accounts import sessions
from gemma_chat.config import load_settings
from gemma_chat.web import edge as edge_module
from gemma_chat.web.edge import LIVE_SESSION_MEMO_S, Edge
from gemma_chat.web.hosts import HostNames, is_foreign

COOKIE = "gemma_session"
ALICE = "alice-token-of-twenty-chars-or-more"
BOB = "bob-token-of-twenty-chars-or-more"


def running_in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Inner:
    """The app behind the edge: answers 200 and remembers each path that reached it."""

    def __init__(self):
        self.reached: list[str] = []

    async def __call__(self, scope, receive, send):
        self.reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"access-control-allow-origin", b"*")]})
        await send({"type": "http.response.body", "body": b"{}"})


def make_edge(tmp_path, *, users=None, queued=(), listen="127.0.0.1", **settings) -> tuple[Edge, Inner]:
    users = {ALICE: 1, BOB: 2} if users is None else users
    inner = Inner()
    config = load_settings(data_dir=tmp_path, env={}, **settings)
    edge = Edge(
        inner, config, live_user=lambda token: users.get(token), queued_sessions=lambda: list(queued),
        host_names=HostNames.for_server(listen, config.allowed_hosts),
    )
    return edge, inner


def call(edge: Edge, method: str, path: str, *, cookie: str | None = None, body=None, host="127.0.0.1:7860",
         headers=(), query: bytes = b"", scheme="http") -> tuple[int, dict, bytes]:
    raw_headers = [(b"host", host.encode())] if host is not None else []
    if cookie is not None:
        raw_headers.append((b"cookie", cookie.encode()))
    raw_headers += [(k.encode(), v.encode()) for k, v in headers]
    data = json.dumps(body).encode() if body is not None else b""
    scope = {"type": "http", "method": method, "path": path, "query_string": query, "scheme": scheme,
             "client": ("127.0.0.1", 5), "headers": raw_headers}
    response = {"body": b""}

    async def receive():
        return {"type": "http.request", "body": data, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            response["status"], response["headers"] = message["status"], dict(message["headers"])
        else:
            response["body"] += message.get("body", b"")

    run_in_own_loop(edge(scope, receive, send))
    return response["status"], response["headers"], response["body"]


def join(edge, cookie_token, session_hash="page1", **kwargs):
    cookie = f"{COOKIE}={cookie_token}" if cookie_token else None
    return call(edge, "POST", "/gradio_api/queue/join", cookie=cookie, body={"session_hash": session_hash, "fn_index": 0, "data": []}, **kwargs)[0]


# --- sessions and the queue's door --------------------------------------------------------------


# PostgreSQL: the lookup is a network round trip, made in a worker thread instead of the event loop.
@pytest.mark.parametrize("database_url", ["", "postgresql://db.example/gemma"])
def test_a_live_session_is_looked_up_once_a_second_and_an_ended_one_is_refused_after(monkeypatch, tmp_path, database_url):
    live = {ALICE: 1}
    lookups = []

    def live_user(token):
        lookups.append((token, running_in_event_loop()))
        return live.get(token)

    clock = [1000.0]
    monkeypatch.setattr(edge_module.time, "monotonic", lambda: clock[0])
    settings = load_settings(data_dir=tmp_path, env={}, database_url=database_url)
    edge = Edge(Inner(), settings, live_user=live_user)

    assert join(edge, ALICE) == 200
    stream = call(edge, "GET", "/gradio_api/queue/data", cookie=f"{COOKIE}={ALICE}", query=b"session_hash=page1")
    assert stream[0] == 200
    assert len(lookups) == 1  # the stream right after its join: no second lookup
    assert lookups[0][1] is not bool(database_url)

    live.pop(ALICE)  # logged out
    clock[0] += LIVE_SESSION_MEMO_S + 0.01
    assert join(edge, ALICE) == 401
    assert len(lookups) == 2


def test_a_page_belongs_to_the_first_cookie_it_was_accepted_with(tmp_path):
    edge, _ = make_edge(tmp_path)
    assert join(edge, ALICE) == 200
    assert join(edge, BOB) == 403  # bob's cookie on alice's page
    assert call(edge, "GET", "/gradio_api/queue/data", cookie=f"{COOKIE}={BOB}", query=b"session_hash=page1")[0] == 403
    assert call(edge, "GET", "/gradio_api/heartbeat/page1")[0] == 403  # closing it would end her events
    assert join(edge, ALICE) == 200


def test_refused_anonymous_requests_leave_no_binding_behind(tmp_path):
    """Finding G: each refused anonymous join bound its made-up hash, churning the table."""
    edge, inner = make_edge(tmp_path)
    for n in range(50):
        assert join(edge, None, f"anon{n}") == 401
        assert join(edge, "forged-token-of-twenty-chars-or-more", f"forged{n}") == 401
        assert call(edge, "GET", f"/gradio_api/heartbeat/beat{n}")[0] == 200  # a signed-out page's keep-alive
        run = call(edge, "POST", "/gradio_api/run/predict", body={"session_hash": f"load{n}", "fn_index": 0, "data": []})
        assert run[0] == 200  # a signed-out page's load event
    assert len(edge.bindings) == 0
    assert "/gradio_api/queue/join" not in inner.reached
    assert join(edge, ALICE, "mine") == 200 and len(edge.bindings) == 1


def test_an_account_has_at_most_events_per_user_events_over_all_its_pages(tmp_path):
    """Finding A's second half: a signed-in account filled the queue by joining with fresh hashes."""
    queued: list[str] = []
    edge, _ = make_edge(tmp_path, queued=queued, events_per_user=3)
    for n in range(3):
        assert join(edge, ALICE, f"fresh{n}") == 200
        queued.append(f"fresh{n}")  # Gradio queued it
    status = join(edge, ALICE, "fresh3")
    assert status == 429
    assert join(edge, BOB, "bobs-page") == 200  # another account is not held back
    queued.pop(0)  # one of alice's events finished
    assert join(edge, ALICE, "fresh3") == 200


# --- hosts, origins, cookies ---------------------------------------------------------------------


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:7860", "127.0.0.1.nip.io:7860", "", "[::1", "localhost:99999"])
def test_a_foreign_host_is_refused_before_anything_else(tmp_path, host):
    """Finding C (DNS rebinding): a name pointed at 127.0.0.1 still says its own name in Host."""
    edge, inner = make_edge(tmp_path)
    origin = f"http://{host}"
    assert call(edge, "GET", "/", host=host)[0] == 400
    assert call(edge, "POST", "/auth/register", host=host, headers=[("origin", origin)], body={})[0] == 400
    assert call(edge, "GET", "/config", host=None)[0] == 400  # no Host at all
    assert inner.reached == []


@pytest.mark.parametrize("host", ["127.0.0.1:7860", "localhost:7860", "LOCALHOST.", "[::1]:7860", "127.0.0.1"])
def test_the_loopback_names_are_served(tmp_path, host):
    edge, inner = make_edge(tmp_path)
    assert call(edge, "GET", "/", host=host)[0] == 200


def test_allowed_hosts_and_the_listen_address_are_served(tmp_path):
    edge, _ = make_edge(tmp_path, listen="192.168.1.5", allowed_hosts="chat.lan, proxy.example.org:443")
    for host in ("192.168.1.5:7860", "chat.lan:7860", "proxy.example.org", "localhost:7860"):
        assert call(edge, "GET", "/", host=host)[0] == 200, host
    assert call(edge, "GET", "/", host="10.0.0.9:7860")[0] == 400
    everywhere, _ = make_edge(tmp_path, listen="0.0.0.0")
    assert call(everywhere, "GET", "/", host="10.0.0.9:7860")[0] == 200  # an address cannot be re-pointed
    assert call(everywhere, "GET", "/", host="rebound.example:7860")[0] == 400


@pytest.mark.parametrize("origin, fetch_site, foreign", [
    ("http://127.0.0.1:7860", None, False),
    ("http://127.0.0.1:7860", "same-origin", False),
    ("http://127.0.0.1:7861", None, True),  # another port: the same site, another origin
    ("https://127.0.0.1:7860", None, True),
    ("http://localhost:7860", None, True),
    (None, "same-site", True),  # another port of this host, as the browser says it
    (None, "cross-site", True),
    (None, "none", False),  # typed in the address bar
    ("null", None, True),
])
def test_origins_are_compared_as_scheme_host_and_port(origin, fetch_site, foreign):
    assert is_foreign("http", "127.0.0.1:7860", origin, fetch_site) is foreign


def test_default_ports_are_the_same_origin():
    assert not is_foreign("http", "app.example", "http://app.example:80", None)
    assert not is_foreign("https", "app.example:443", "https://app.example", None)
    assert is_foreign("https", "app.example", "http://app.example", None)


def test_another_origin_may_load_the_page_but_not_run_or_read_anything(tmp_path):
    edge, inner = make_edge(tmp_path)
    other = [("origin", "http://127.0.0.1:9999"), ("sec-fetch-site", "same-site")]
    status, headers, _ = call(edge, "GET", "/config", headers=other)
    assert status == 200 and b"access-control-allow-origin" not in headers
    for method, path in [("POST", "/auth/register"), ("POST", "/gradio_api/queue/join"), ("GET", "/statement.csv"),
                         ("POST", "/v1/chat/completions"), ("GET", "/gradio_api/queue/data"), ("OPTIONS", "/config")]:
        assert call(edge, method, path, headers=other, cookie=f"{COOKIE}={ALICE}", body={})[0] == 403, path
    assert inner.reached == ["/config"]


def test_two_session_cookies_are_refused(tmp_path):
    """Finding E: the edge checked the first gemma_session, the handlers used the last."""
    edge, inner = make_edge(tmp_path)
    both = f"{COOKIE}={ALICE}; other=1; {COOKIE}={BOB}"
    for method, path in [("POST", "/gradio_api/queue/join"), ("POST", "/gradio_api/run/predict"), ("GET", "/statement.csv"), ("GET", "/")]:
        assert call(edge, method, path, cookie=both, body={"session_hash": "p", "fn_index": 0})[0] == 400, path
    assert inner.reached == []
    assert sessions.session_token(both) is None  # the handlers' parser: nobody is signed in by it
    assert sessions.session_token(f"other=1; {COOKIE}={ALICE}") == ALICE


# --- default deny -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [
    ("POST", "/gradio_api/call/chat"), ("POST", "/gradio_api/call/v2/top_up"), ("GET", "/gradio_api/call/chat/abc"),
    ("GET", "/gradio_api/info"), ("GET", "/gradio_api/openapi.json"), ("GET", "/openapi.json"), ("GET", "/docs"),
    ("POST", "/gradio_api/run/top_up"), ("POST", "/gradio_api/api/top_up"), ("POST", "/gradio_api/cancel"),
    ("POST", "/gradio_api/reset"), ("GET", "/gradio_api/deep_link"), ("GET", "/monitoring"),
    ("POST", "/gradio_api/vibe-edit"), ("GET", "/gradio_api/upload_progress"), ("GET", "/gradio_api/proxy=http://x/"),
    ("POST", "/gradio_api/queue/data"), ("GET", "/gradio_api/queue/join"), ("GET", "/assets/../config"),
])
def test_routes_the_page_does_not_use_are_not_found_before_the_app_sees_them(tmp_path, method, path):
    """Findings A, F and I: /call/* joined the queue without a cookie, printed tracebacks, and /info
    and /openapi.json described every event."""
    edge, inner = make_edge(tmp_path)
    for cookie in (None, f"{COOKIE}={ALICE}"):
        assert call(edge, method, path, cookie=cookie, body={"session_hash": "p", "fn_index": 0, "data": []})[0] == 404
    assert inner.reached == []


def test_uploads_are_refused(tmp_path):
    edge, inner = make_edge(tmp_path)
    assert call(edge, "POST", "/gradio_api/upload", cookie=f"{COOKIE}={ALICE}", body={})[0] == 413
    assert inner.reached == []


def test_an_address_over_its_sign_in_limit_is_refused_before_the_app_sees_the_request(tmp_path):
    inner = Inner()
    waits = {"127.0.0.1": 7}
    edge = Edge(inner, load_settings(data_dir=tmp_path, env={}), live_user=lambda token: None,
                signin_retry_after=lambda client: waits.get(client, 0))
    status, headers, body = call(edge, "POST", "/auth/login", body={"username": "a", "password": "b"})
    assert status == 429 and headers[b"retry-after"] == b"7" and inner.reached == []
    assert json.loads(body) == {"ok": False, "message": "Too many sign-in attempts; try again in 7 s."}
    waits.clear()  # the window has passed
    assert call(edge, "POST", "/auth/login", body={})[0] == 200 and inner.reached == ["/auth/login"]
