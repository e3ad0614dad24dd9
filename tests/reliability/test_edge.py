"""The web edge from the attacker's side: real HTTP clients against `python main.py` in a subprocess.

Issue 10's findings, each replayed: a signed-in browser's session_hash reused without its cookie,
queued events called through /run/*, an anonymous sign-in flood, uploads, another origin, framing,
a stranger locking the admin out, registration floods, half-open connections and malformed requests.
Issue 21's (A-I): the queue reached through /call/*, X-Forwarded-For believed from 127.0.0.1, a
foreign Host, one address's 500 sockets, a trickled body, two session cookies, /info and /openapi.json.
Two clients on one machine are told apart by the socket's address: the client binds 127.0.0.2 …
(the app never trusts X-Forwarded-For unless told to).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import ROOT, run_env

from .conftest import FAULTS_HOOK, balance, query, scalar, session, signed_up, snapshot, start_app
from .gradio_http import GradioSession, endpoint_index, fetch_config

pytestmark = pytest.mark.slow

# The defaults a real install runs with (RunningApp raises them for the other tests).
DEFAULT_LIMITS = {"GEMMA_CHAT_SIGNIN_ATTEMPTS_PER_MINUTE": "20", "GEMMA_CHAT_REGISTRATIONS_PER_HOUR": "5"}
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    running = start_app(tmp_path_factory.mktemp("edge"), **DEFAULT_LIMITS)
    yield running
    running.stop()


def client_at(app, address: str) -> GradioSession:
    return GradioSession(app.url, local_address=address)


def test_a_replayed_session_hash_without_its_cookie_gets_nothing(app):
    alice = signed_up(app, "alice")  # 127.0.0.1: alice's registration counts against this address
    assert alice.chat("mini", "victim-secret: what is the capital of France?").charged == 1
    assert "Added 50 credits" in alice.top_up(50)
    before = snapshot(app.data_dir)

    thief = GradioSession(app.url, alice.config)  # no cookie, alice's address (session_hash)
    thief.session_hash = alice.session_hash
    for index, dependency in enumerate(thief.config["dependencies"]):
        if not dependency.get("backend_fn"):
            continue
        outcome = thief.call_with_placeholders(index, dropdown="mini")
        shown = json.dumps(outcome.data, ensure_ascii=False) + str(outcome.error)
        assert "victim-secret" not in shown and "alice" not in shown and "credits" not in shown, (dependency["api_name"], shown[:300])
    assert not thief.call("history", 1).ok
    assert not thief.call("top_up", 500).ok
    assert not thief.chat("mini", "spend alice's credits").outcome.ok
    assert snapshot(app.data_dir) == before  # nothing charged, topped up, logged or revoked

    # Her stream, her deep link and her heartbeat are not the thief's either.
    stream = thief.http.get(app.url + "gradio_api/queue/data", params={"session_hash": alice.session_hash})
    assert stream.status_code in (401, 403)
    assert thief.http.get(app.url + "gradio_api/deep_link", params={"session_hash": alice.session_hash}).status_code == 404
    # A signed-in stranger replaying her hash with his own cookie is refused as well.
    mallory = client_at(app, "127.0.0.2")
    assert mallory.register("mallory") == ""
    mallory.restore()  # his own page loaded, signed in
    mallory.session_hash = alice.session_hash
    refused = mallory.call("history", 1)
    assert not refused.ok and "another sign-in" in refused.error

    # Alice was not logged out: her page goes on.
    assert alice.call("history", 1).ok
    assert "Added 5 credits" in alice.top_up(5)
    assert alice.restore()[1]["visible"] is True


def test_a_streaming_answer_cannot_be_read_with_its_session_hash(app):
    alice = client_at(app, "127.0.0.3")
    assert alice.register("streamer") == ""
    stolen, started = [], threading.Event()

    def steal():
        started.wait(30)
        with httpx.Client(timeout=30) as thief:
            response = thief.get(app.url + "gradio_api/queue/data", params={"session_hash": alice.session_hash})
            stolen.append((response.status_code, response.text))

    thread = threading.Thread(target=steal)
    thread.start()
    reply = alice.chat("mini", "Tell me about the sea.", on_update=lambda _: started.set())
    thread.join(30)
    assert reply.charged == 1 and reply.text
    (status, text), = stolen
    assert status in (401, 403) and "process_generating" not in text


def test_queued_events_are_refused_outside_the_queue(app):
    alice = client_at(app, "127.0.0.4")
    assert alice.register("direct") == ""
    before = balance(app.data_dir, "direct")
    index = endpoint_index(alice.config, "top_up")
    body = {"data": [500], "fn_index": index, "session_hash": alice.session_hash}
    for path in ["gradio_api/run/predict", "gradio_api/run/top_up", "gradio_api/api/top_up"]:
        response = alice.http.post(app.url + path, json=body)
        assert response.status_code != 200 or "error" in response.text.lower(), (path, response.text[:200])
    assert balance(app.data_dir, "direct") == before


def test_an_anonymous_sign_in_flood_does_not_stop_signed_in_users(tmp_path):
    """90 anonymous sign-ins from many addresses, at bcrypt's real cost, while a user works."""
    app = start_app(tmp_path, GEMMA_CHAT_BCRYPT_ROUNDS="12", **DEFAULT_LIMITS)
    try:
        user = signed_up(app, "worker")
        flood_statuses: list[int] = []

        def anonymous(n: int) -> None:
            with httpx.Client(transport=httpx.HTTPTransport(local_address=f"127.0.1.{n % 30 + 1}"), timeout=60) as client:
                response = client.post(app.url + "auth/login", json={"username": "admin", "password": f"guess {n}"})
                flood_statuses.append(response.status_code)

        with ThreadPoolExecutor(16) as pool:
            flood = [pool.submit(anonymous, n) for n in range(90)]
            time.sleep(0.3)  # the flood is under way
            results = []
            for n in range(3):
                results.append(user.top_up(1))
                results.append(user.call("history", 1))
            for future in flood:
                future.result()
        assert all("Added 1 credit" in r for r in results[0::2]), results
        assert all(outcome.ok for outcome in results[1::2]), results
        assert len(flood_statuses) == 90 and set(flood_statuses) <= {400, 429}
        assert 429 in flood_statuses  # the sign-in lane was full: the rest were turned away at once
        assert "Added 1 credit" in user.top_up(1)
        assert scalar(app.data_dir, "SELECT COUNT(*) FROM users") == 1  # and nobody got in
    finally:
        app.stop()


def test_uploads_are_refused(app):
    with httpx.Client(timeout=30) as client:
        response = client.post(app.url + "gradio_api/upload", files={"files": ("a.txt", b"x" * 1024)})
        assert response.status_code == 413
        try:  # 50 MB: refused before it is read (the server may close the connection mid-send)
            big = client.post(app.url + "gradio_api/upload", content=b"x" * (50 * 1024 * 1024), headers={"content-type": "application/octet-stream"})
            assert big.status_code == 413
        except httpx.TransportError:
            pass
        assert client.get(app.url + "config").status_code == 200  # still serving


def test_another_origin_gets_no_cors_permission_and_cannot_change_anything(app):
    host = f"localhost:{app.port}"  # a name the app answers to; the page that asks is elsewhere
    evil = {"host": host, "origin": "https://evil.example"}
    with httpx.Client(timeout=30) as client:
        before = scalar(app.data_dir, "SELECT COUNT(*) FROM users")
        register = client.post(app.url + "auth/register", headers=evil, json={"username": "csrf1", "password": "long enough pw"})
        assert register.status_code == 403 and "access-control-allow-origin" not in register.headers
        config = client.get(app.url + "config", headers=evil)
        assert config.status_code == 200 and "access-control-allow-origin" not in config.headers
        preflight = client.options(
            app.url + "gradio_api/queue/join",
            headers={**evil, "access-control-request-method": "POST", "access-control-request-headers": "content-type"},
        )
        assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
        assert "access-control-allow-credentials" not in preflight.headers
        assert scalar(app.data_dir, "SELECT COUNT(*) FROM users") == before
        # The app's own origin, at the same host, is served.
        own = {"host": host, "origin": f"http://{host}"}
        assert client.get(app.url + "config", headers=own).status_code == 200


def test_every_response_carries_the_security_headers(app):
    with httpx.Client(timeout=30) as client:
        responses = [
            client.get(app.url),
            client.get(app.url + "config"),
            client.get(app.url + "no/such/page"),
            client.post(app.url + "auth/login", json={"username": "nobody", "password": "wrong password"}),
            client.post(app.url + "gradio_api/upload", content=b"x"),
        ]
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name, response.headers)
        assert "frame-ancestors 'self'" in response.headers.get("content-security-policy", ""), response.url


def test_monitoring_and_analytics_are_off(app):
    with httpx.Client(timeout=30) as client:
        assert client.get(app.url + "monitoring").status_code in (403, 404)
        assert client.get(app.url + "config").json()["analytics_enabled"] is False


def test_a_strangers_wrong_passwords_do_not_lock_the_owner_out(app):
    owner = client_at(app, "127.0.0.5")
    assert owner.register("owner", "the owner's password") == ""
    stranger = client_at(app, "127.0.0.6")
    messages = [stranger.login("owner", f"guess {n}") for n in range(5)]
    assert messages[:4] == ["Wrong username or password."] * 4 and messages[4].startswith("Too many failed attempts")
    spoofed = stranger.http.post(
        app.url + "auth/login", json={"username": "owner", "password": "the owner's password"},
        headers={"x-forwarded-for": "127.0.0.5"},  # not trusted by default: still the stranger's lock-out
    )
    assert spoofed.status_code == 400 and spoofed.json()["message"].startswith("Too many failed attempts")
    assert client_at(app, "127.0.0.5").login("owner", "the owner's password") == ""  # the owner, from her machine
    # `users unlock` ends the stranger's lock-out too, from the CLI while the app runs.
    unlocked = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "users", "unlock", "owner", "--data-dir", str(app.data_dir)],
        capture_output=True, text=True, env=run_env(app.data_dir), timeout=60,
    )
    assert unlocked.returncode == 0, unlocked.stderr
    assert scalar(app.data_dir, "SELECT COUNT(*) FROM login_throttles WHERE locked_until IS NOT NULL") == 0


def test_registrations_per_address_per_hour(app):
    client = client_at(app, "127.0.0.7")
    assert [client.register(f"bulk{n}") for n in range(5)] == [""] * 5
    assert client.register("bulk5").startswith("Too many new accounts from your address")
    assert client_at(app, "127.0.0.8").register("elsewhere") == ""
    assert not query(app.data_dir, "SELECT 1 FROM users WHERE username = 'bulk5'")


def test_log_out_everywhere_and_disabling_end_sessions_in_other_browsers(app):
    laptop = client_at(app, "127.0.0.9")
    assert laptop.register("roamer") == ""
    phone = client_at(app, "127.0.0.9")
    assert phone.login("roamer") == ""
    phone.logout(everywhere=True)
    refused = laptop.call("history", 1)
    assert not refused.ok and "log in" in refused.error
    assert laptop.restore()[0]["visible"] is True  # the reloaded page shows the sign-in form
    assert laptop.login("roamer") == ""
    disabled = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "users", "disable", "roamer", "--data-dir", str(app.data_dir)],
        capture_output=True, text=True, env=run_env(app.data_dir), timeout=60,
    )
    assert disabled.returncode == 0, disabled.stderr
    assert not laptop.call("history", 1).ok


def test_malformed_requests_get_short_answers_and_no_traceback_on_stdout(app):
    with httpx.Client(timeout=10) as client:
        for method, path, body in [
            ("GET", "gradio_api/queue/data", None),
            ("GET", "gradio_api/queue/data?session_hash=nonexistent", None),
            ("POST", "gradio_api/queue/join", b"garbage"),
            ("POST", "gradio_api/run/predict", b'{"fn_index": 999, "session_hash": "x", "data": []}'),
            ("POST", "gradio_api/run/predict", b"\xff\xfe"),
            ("POST", "auth/login", b"\x00" * 100),
        ]:
            response = client.request(method, app.url + path, content=body, headers={"content-type": "application/json"})
            assert 400 <= response.status_code < 600 and "Traceback" not in response.text, (path, response.text[:200])
    time.sleep(0.5)
    assert "Traceback" not in app.log_path.read_text()


def test_a_half_open_connection_is_closed(app):
    with socket.create_connection(("127.0.0.1", app.port), timeout=30) as silent, \
            socket.create_connection(("127.0.0.1", app.port), timeout=30) as trickle:
        trickle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a request head that never ends
        began = time.monotonic()
        assert silent.recv(1) == b""  # closed by the server
        assert trickle.recv(1) == b""
        assert time.monotonic() - began < 25


def test_a_request_head_too_large_is_refused_and_a_large_body_is_not(app):
    padding = b"".join(b"X-Padding-%d: %s\r\n" % (n, b"a" * 1000) for n in range(100))  # 100 KB of headers
    with socket.create_connection(("127.0.0.1", app.port), timeout=30) as client:
        answer = b""
        try:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + padding + b"\r\n")
        except OSError:
            pass  # the server closed the connection while the head was still coming
        while chunk := client.recv(4096):
            answer += chunk
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:80]  # never the page
    # A body is not a head: 1 MB to the sign-in route is read and answered (the credentials are wrong).
    with httpx.Client(timeout=30) as client:
        big = client.post(app.url + "auth/login", json={"username": "nobody", "password": "x" * 1_000_000})
    assert big.status_code in (400, 401, 413, 422), big.text[:200]


# --- issue 21: default deny, addresses, hosts, connections, one cookie, quiet failures ------------


def anonymous_call_flood(url: str, seconds: float, threads: int = 4) -> dict[int, int]:
    """What finding A did: threads without a cookie posting to Gradio's /call routes (each of which
    joined the same queue as the page), for `seconds`, loopback only. Returns status -> count."""
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run(n: int) -> None:
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < deadline:
                for path in ("gradio_api/call/top_up", "gradio_api/call/v2/top_up", "gradio_api/call/chat"):
                    status = client.post(url + path, json={"data": [5]}).status_code
                    with lock:
                        statuses[status] = statuses.get(status, 0) + 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(threads)))
    return statuses


def test_anonymous_clients_cannot_reach_the_queue_through_the_call_routes(app):
    """Finding A: 4 threads without a cookie kept the queue at 72/72 through /gradio_api/call/*, and
    a signed-in user's top-ups got 503 "Queue is full" 14 times out of 15. Finding F: each anonymous
    /call/chat printed a traceback, /call/v2/top_up answered 500."""
    user = client_at(app, "127.0.0.10")
    assert user.register("queued") == ""
    log_before = app.log_path.read_text()
    with ThreadPoolExecutor(1) as pool:
        flood = pool.submit(anonymous_call_flood, app.url, 4.0)
        time.sleep(0.5)
        top_ups = [user.top_up(1) for _ in range(15)]
        statuses = flood.result()
    assert all("Added 1 credit" in answer for answer in top_ups), top_ups
    assert set(statuses) == {404} and sum(statuses.values()) > 30, statuses
    time.sleep(0.5)
    assert "Traceback" not in app.log_path.read_text()[len(log_before):]


def test_the_api_descriptions_are_not_served(app):
    """Finding I: /gradio_api/info (76 KB, every admin event named) and /openapi.json were public."""
    admin_page = client_at(app, "127.0.0.11")
    assert admin_page.register("describer") == ""
    for client in (httpx.Client(timeout=10), admin_page.http):
        for path in ("gradio_api/info", "gradio_api/openapi.json", "openapi.json", "docs", "gradio_api/info/"):
            response = client.get(app.url + path)
            assert response.status_code == 404 and "admin" not in response.text, (path, response.text[:100])


# Bodies with the page's fields and the wrong shape, each for an event with n inputs: too few values,
# objects where the components want text, numbers or choices, event data that is not the event's,
# and an object where the list of values goes.
WRONG_SHAPES = {
    "no values": lambda n: {"data": []},
    "objects": lambda n: {"data": [{"x": [1]}] * n},
    "foreign event data": lambda n: {"data": [None] * n, "event_data": 7},
    "an object for the list": lambda n: {"data": {"0": 1}},
}


def test_wrong_shaped_events_with_a_live_cookie_get_short_answers_and_no_traceback(app):
    """Quiet failures (issue 21, 6): with a live cookie and the page's own session_hash, an event of the
    app sent with values of the wrong number or types made Gradio print its traceback to stdout, once
    per request. The events outside the queue take anonymous calls too: the same for those."""
    user = client_at(app, "127.0.0.18")
    assert user.register("misshapen") == ""
    anonymous = GradioSession(app.url, user.config)
    log_before = app.log_path.read_text()
    errors_before = scalar(app.data_dir, "SELECT COUNT(*) FROM error_events")
    refused = 0
    for index, dependency in enumerate(user.config["dependencies"]):
        clients = (user,) if dependency.get("queue", True) else (user, anonymous)
        for shape, body in WRONG_SHAPES.items():
            for client in clients:
                outcome = client.send({**body(len(dependency["inputs"])), "fn_index": index, "session_hash": client.session_hash})
                error = str(outcome.error or "")
                assert "Traceback" not in error and len(error) < 500, (index, dependency.get("api_name"), shape, error[:200])
                refused += not outcome.ok
    time.sleep(0.5)
    assert "Traceback" not in app.log_path.read_text()[len(log_before):]
    assert refused > 150, refused
    # Gradio refusing a body is not an error of the app's: the administrators' error list stays clean.
    assert scalar(app.data_dir, "SELECT COUNT(*) FROM error_events") == errors_before
    assert "Added 5 credits" in user.top_up(5)  # the page is still signed in and served
    assert user.chat("mini", "What is the capital of France?").charged == 1


def test_two_session_cookies_are_refused_not_split_between_edge_and_handlers(app):
    """Finding E: with alice's cookie first and bob's last, the edge let the page in on alice's and
    the handler ran as bob."""
    alice, bob = client_at(app, "127.0.0.12"), client_at(app, "127.0.0.12")
    assert alice.register("twocookie_a") == "" and bob.register("twocookie_b") == ""
    both = f"gemma_session={alice.http.cookies['gemma_session']}; gemma_session={bob.http.cookies['gemma_session']}"
    body = {"data": [1], "fn_index": endpoint_index(alice.config, "history"), "session_hash": alice.session_hash,
            "event_data": None, "trigger_id": None}
    with httpx.Client(timeout=10) as client:
        joined = client.post(app.url + "gradio_api/queue/join", json=body, headers={"cookie": both})
        statement = client.get(app.url + "statement.csv", headers={"cookie": both})
        page = client.get(app.url, headers={"cookie": both})
    assert joined.status_code == 400 and "event_id" not in joined.text
    assert statement.status_code == 400 and "twocookie" not in statement.text
    assert page.status_code == 400
    assert alice.call("history", 1).ok  # each cookie alone still works


@pytest.fixture(scope="module")
def desktop_app(tmp_path_factory):
    """The defaults a desktop runs with, and a short body deadline so the trickle test is quick."""
    running = start_app(tmp_path_factory.mktemp("desktop"), GEMMA_CHAT_REQUEST_BODY_TIMEOUT_S="3", **DEFAULT_LIMITS)
    yield running
    running.stop()


def test_x_forwarded_for_from_127_0_0_1_is_not_believed(desktop_app):
    """Finding B: uvicorn's default proxy_headers believed X-Forwarded-For from 127.0.0.1 (the
    desktop's own address), so rotating it beat every per-address limit; the earlier test connected
    from 127.0.0.6, which uvicorn does not trust, and missed it."""
    app = desktop_app
    statuses = []
    with httpx.Client(timeout=30) as client:  # from 127.0.0.1
        for n in range(25):
            response = client.post(
                app.url + "auth/login", json={"username": f"nobody{n}", "password": "a wrong guess"},
                headers={"x-forwarded-for": f"10.9.{n}.1"},
            )
            statuses.append(response.status_code)
        assert statuses[:20] == [400] * 20 and set(statuses[20:]) == {429}, statuses  # one address: 20 a minute
        # X-Forwarded-Proto made the cookie Secure over plain http (so the browser dropped it).
        with httpx.Client(timeout=30, transport=httpx.HTTPTransport(local_address="127.0.0.13")) as other:
            registered = other.post(app.url + "auth/register", json={"username": "proto", "password": "long enough pw"},
                                    headers={"x-forwarded-proto": "https"})
        assert registered.status_code == 200 and "secure" not in registered.headers["set-cookie"].lower()


def test_a_foreign_host_is_refused_before_anything_else(desktop_app):
    """Finding C, without a browser: a name that resolves to 127.0.0.1 (DNS rebinding) says its own
    name in Host; with a matching Origin it passed the origin check (tests/reliability/
    test_cross_origin_browser.py::test_a_rebound_name_reaches_nothing does it in Chromium)."""
    app = desktop_app
    rebound = {"host": f"attacker.example:{app.port}", "origin": f"http://attacker.example:{app.port}"}
    with httpx.Client(timeout=10) as client:
        for method, path in [("GET", ""), ("GET", "config"), ("POST", "auth/register"), ("POST", "auth/login")]:
            response = client.request(method, app.url + path, headers=rebound, json={"username": "rebound", "password": "long enough pw"})
            assert response.status_code == 400 and "gemma" not in response.text.lower(), (path, response.text[:100])
        assert client.get(app.url + "config", headers={"host": f"localhost:{app.port}"}).status_code == 200
    assert not query(app.data_dir, "SELECT 1 FROM users WHERE username = 'rebound'")


def hold_sockets(port: int, address: str, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(address, 0)))
        except OSError:
            break
    return held


def test_one_address_with_500_sockets_does_not_deny_service_to_another(desktop_app):
    """Finding D: ~520 sockets from one address filled limit_concurrency (global) and everyone got
    503. Now one address holds at most connections_per_address (64); the rest are turned away."""
    app = desktop_app
    config = fetch_config(app.url)  # fetched from 127.0.0.1 before its sockets are taken
    held = hold_sockets(app.port, "127.0.0.1", 500)
    try:
        assert len(held) == 500
        time.sleep(0.5)
        turned_away = 0
        for connection in held:
            connection.settimeout(0.05)
            try:
                if connection.recv(64).startswith(b"HTTP/1.1 503"):
                    turned_away += 1
            except OSError:
                pass  # still open: one of the address's 64
        assert turned_away >= 500 - 64, turned_away
        # Another address loads the page, signs up and runs an event meanwhile.
        other = GradioSession(app.url, config, local_address="127.0.0.2")
        assert other.http.get(app.url).status_code == 200
        assert other.register("elsewhere_d") == ""
        assert "Added 2 credits" in other.top_up(2)
    finally:
        for connection in held:
            connection.close()


def test_a_trickled_body_is_closed_at_its_deadline(desktop_app):
    """Finding D's second half: a body trickled one byte every 4 s was never timed out."""
    app = desktop_app
    with socket.create_connection(("127.0.0.1", app.port), timeout=30, source_address=("127.0.0.14", 0)) as trickle:
        trickle.sendall(f"POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\ncontent-type: application/json\r\n"
                        "content-length: 1000\r\n\r\n".encode())
        began = time.monotonic()
        closed = False
        while time.monotonic() - began < 15:
            try:
                trickle.sendall(b" ")
            except OSError:
                closed = True
                break
            trickle.settimeout(1.0)
            try:
                if trickle.recv(4096) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
        assert closed, "the server kept a trickled body open for 15 s"
        assert time.monotonic() - began < 3 + 5  # the deadline (3 s here) and a little
    # A body sent at once is still read (from an address of its own: this module's other tests spend
    # 127.0.0.1's sign-in allowance).
    with httpx.Client(timeout=10, transport=httpx.HTTPTransport(local_address="127.0.0.17")) as client:
        assert client.post(app.url + "auth/login", json={"username": "nobody", "password": "wrong password"}).status_code == 400


def test_a_signed_in_account_cannot_fill_the_queue_with_fresh_pages(tmp_path):
    """Finding A's second half: a free account joined the queue from fresh session_hashes without
    limit. Now an account has at most events_per_user events queued or running over all its pages;
    another user's events go on."""
    app = start_app(tmp_path, GEMMA_CHAT_EVENTS_PER_USER="3", **FAULTS_HOOK)
    try:
        mallory = client_at(app, "127.0.0.15")
        assert mallory.register("mallory") == ""
        chat_index = endpoint_index(mallory.config, "chat")
        statuses = []
        for n in range(10):
            mallory.session_hash = f"fresh-page-{n}"
            mallory.restore()  # a page loads (outside the queue), then sends a slow chat and never reads it
            body = {"data": ["mini", "[fault:slow] hold a place", [], None, ""], "fn_index": chat_index,
                    "session_hash": mallory.session_hash, "event_data": None, "trigger_id": None}
            joined = mallory.http.post(app.url + "gradio_api/queue/join", json=body)
            statuses.append((joined.status_code, joined.text[:120]))
        assert [status for status, _ in statuses] == [200] * 3 + [429] * 7, statuses
        assert "waiting or running" in statuses[-1][1]
        alice = client_at(app, "127.0.0.16")
        assert alice.register("alice_q") == ""
        assert "Added 1 credit" in alice.top_up(1)  # the queue still has room for everyone else
    finally:
        app.stop()
