"""The web layer in-process: the /auth routes, the session cookie, rate limits and the edge's answers.

The same app object `python main.py` serves (web/app.py), driven by Starlette's TestClient; the
attacks over real sockets are in tests/reliability/test_edge.py.
"""

from __future__ import annotations

import dataclasses
import sys

import pytest
from fastapi.testclient import TestClient

from conftest import live_sessions, run_in_own_loop

from gemma_chat.accounts import sessions
from gemma_chat.store.db import User, WebSession
from gemma_chat.web.app import SIGNIN_NICE, SignInLane, create_app


@pytest.fixture
def web_settings(chat_settings):
    return dataclasses.replace(chat_settings, signin_attempts_per_minute=1000, registrations_per_hour=1000)


def client_for(settings, engine, host="127.0.0.1") -> TestClient:
    web = create_app(settings, engine)
    return TestClient(web.fastapi, base_url=f"http://{host}:7860", client=("203.0.113.7", 50000))


@pytest.fixture
def client(web_settings, demo_engine):
    return client_for(web_settings, demo_engine)


def post(client, route, username, password="long enough pw"):
    response = client.post(f"/auth/{route}", json={"username": username, "password": password})
    return response.status_code, response.json()["message"]


def test_registration_sets_an_httponly_strict_session_cookie_and_stores_only_its_hash(client, web_settings):
    response = client.post("/auth/register", json={"username": "alice", "password": "long enough pw"})
    assert response.status_code == 200 and response.json() == {"ok": True, "message": ""}
    cookie = response.headers["set-cookie"]
    token = client.cookies["gemma_session"]
    assert len(token) >= 40 and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; over https it is Secure (next test)
    stored = WebSession.get()
    assert stored.token_hash == sessions.hash_token(token) and token not in stored.token_hash
    assert sessions.resolve_session(web_settings, token).user.username == "alice"


def test_the_cookie_is_secure_over_https(web_settings, demo_engine):
    client = TestClient(create_app(web_settings, demo_engine).fastapi, base_url="https://127.0.0.1")
    response = client.post("/auth/register", json={"username": "alice", "password": "long enough pw"})
    assert response.status_code == 200 and "Secure" in response.headers["set-cookie"]


@pytest.mark.parametrize(
    "username, password, expected",
    [("alice", "long enough pw", "taken"), ("x", "long enough pw", "3 to 32"), ("carol", "short", "at least 8"), (None, None, "Enter a username")],
)
def test_registration_errors_are_messages_and_sign_no_one_in(client, username, password, expected):
    assert post(client, "register", "alice") == (200, "")
    client.cookies.clear()
    status, message = post(client, "register", username, password)
    assert status == 400 and expected in message and "gemma_session" not in client.cookies


def test_login_errors_and_lockout_are_messages(client):
    post(client, "register", "alice")
    client.cookies.clear()
    assert post(client, "login", "alice", "wrong password") == (400, "Wrong username or password.")
    assert post(client, "login", "nobody", "wrong password") == (400, "Wrong username or password.")
    for _ in range(4):
        status, message = post(client, "login", "alice", "wrong password")
    assert "Try again at" in message
    status, message = post(client, "login", "alice", "long enough pw")  # even the right password, while locked
    assert status == 400 and "Try again at" in message and "gemma_session" not in client.cookies


def test_a_malformed_or_huge_sign_in_body_is_a_message(client):
    for body in [b"not json", b"[1, 2]", b"{" + b"x" * 10_000 + b"}"]:
        response = client.post("/auth/login", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400 and response.json()["message"]


def test_logout_ends_the_session_and_clears_the_cookie(client):
    post(client, "register", "alice")
    token = client.cookies["gemma_session"]
    response = client.post("/auth/logout")
    assert response.status_code == 200 and 'gemma_session=""' in response.headers["set-cookie"]
    assert WebSession.get(WebSession.token_hash == sessions.hash_token(token)).revoked_at is not None


def test_log_out_everywhere_ends_every_session_of_the_user(web_settings, demo_engine):
    laptop, phone, other = (client_for(web_settings, demo_engine) for _ in range(3))
    post(laptop, "register", "alice")
    post(phone, "login", "alice")
    post(other, "register", "bob")
    assert laptop.post("/auth/logout-all").status_code == 200
    alice = User.get(User.username == "alice")
    assert live_sessions(alice.id, web_settings) == 0
    assert live_sessions(User.get(User.username == "bob").id, web_settings) == 1


def test_sign_ins_per_client_are_rate_limited_before_any_bcrypt(chat_settings, demo_engine, monkeypatch):
    import bcrypt

    settings = dataclasses.replace(chat_settings, signin_attempts_per_minute=3, registrations_per_hour=100)
    client = client_for(settings, demo_engine)
    checks = []
    real_checkpw = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: checks.append(1) or real_checkpw(pw, h))
    answers = [post(client, "login", "nobody", "wrong password") for _ in range(5)]
    assert [status for status, _ in answers] == [400, 400, 400, 429, 429]
    assert answers[-1][1].startswith("Too many sign-in attempts; try again in")
    assert len(checks) == 3  # the refused attempts cost no bcrypt


def test_registrations_per_client_per_hour(chat_settings, demo_engine):
    settings = dataclasses.replace(chat_settings, registrations_per_hour=2)
    client = client_for(settings, demo_engine)
    assert post(client, "register", "user1")[0] == 200
    assert post(client, "register", "user2")[0] == 200
    status, message = post(client, "register", "user3")
    assert status == 429 and "Too many new accounts" in message
    assert User.select().count() == 2
    assert post(client, "login", "user1")[0] == 200  # signing in is not registering
    closed = client_for(dataclasses.replace(chat_settings, registrations_per_hour=0), demo_engine)
    assert post(closed, "register", "user4") == (400, "Registration is closed; ask an administrator for an account.")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_bcrypt_runs_below_the_event_loops_cpu_priority():
    """Under an anonymous sign-in flood the cores go to signed-in users' events first (bench edge)."""
    import os
    import threading

    def own_priority() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    async def event_loop():
        before = own_priority()
        return before, await lane.run(own_priority), own_priority()

    lane = SignInLane(1)
    try:
        before, in_lane, after = run_in_own_loop(event_loop())
    finally:
        lane.close()
    assert in_lane == min(19, before + SIGNIN_NICE)
    assert after == before  # the event loop's own thread is untouched


def test_an_address_learns_at_most_registrations_per_hour_taken_names(chat_settings, demo_engine):
    """Registration must say a name is taken, so saying it is rationed like creating an account."""
    settings = dataclasses.replace(chat_settings, registrations_per_hour=3, signin_attempts_per_minute=1000)
    web = create_app(settings, demo_engine)

    def at(address):
        return TestClient(web.fastapi, base_url="http://127.0.0.1:7860", client=(address, 50000))

    owners, prober = at("198.51.100.9"), at("203.0.113.7")
    assert [post(owners, "register", name)[0] for name in ("alice", "bob", "carol")] == [200, 200, 200]
    answers = [post(prober, "register", name) for name in ("alice", "bob", "carol")]
    assert [status for status, _ in answers] == [400] * 3 and all("is taken" in message for _, message in answers)
    # The budget is spent: a taken name and a free one now get the very same answer.
    taken, free = post(prober, "register", "alice"), post(prober, "register", "nobody_yet")
    assert taken == free and taken[0] == 429 and "Too many new accounts" in taken[1]
    assert not User.select().where(User.username == "nobody_yet").exists()
    assert post(at("192.0.2.4"), "register", "erin")[0] == 200  # other addresses are not affected


def test_the_statement_csv_is_the_cookie_holder_s_own_and_nobody_else_s(web_settings, demo_engine):
    from gemma_chat.accounts import auth
    from gemma_chat.billing import ledger

    app = create_app(web_settings, demo_engine).fastapi
    alice, bob, anonymous = (TestClient(app, base_url="http://127.0.0.1:7860") for _ in range(3))
    assert post(alice, "register", "alice")[0] == post(bob, "register", "bob")[0] == 200
    for amount in (1, 2):
        ledger.top_up(auth.find_user("alice").id, amount, maximum=1000)
    ledger.top_up(auth.find_user("bob").id, 99, maximum=1000)

    response = alice.get("/statement.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert 'attachment; filename="gemma-chat-statement-alice-' in response.headers["content-disposition"]
    assert response.headers["cache-control"] == "no-store"
    rows = [line.split(",") for line in response.text.splitlines()]
    assert rows[0][:5] == ["entry", "created_at_utc", "kind", "amount", "balance_after"]
    assert [(row[2], row[3]) for row in rows[1:]] == [("signup", "10"), ("topup", "1"), ("topup", "2")]
    assert ",99," in bob.get("/statement.csv").text and ",99," not in response.text

    refused = anonymous.get("/statement.csv")  # no cookie: nothing of anyone's
    assert refused.status_code == 401 and "entry" not in refused.text
    anonymous.cookies.set("gemma_session", "a forged token of the right length.....")
    assert anonymous.get("/statement.csv").status_code == 401
    token = alice.cookies.get("gemma_session")
    alice.post("/auth/logout")
    replay = TestClient(app, base_url="http://127.0.0.1:7860")
    replay.cookies.set("gemma_session", token)
    assert replay.get("/statement.csv").status_code == 401  # a logged-out cookie is worth nothing


@pytest.mark.parametrize("trust, peer, believed", [
    (False, "127.0.0.1", False),  # the desktop: uvicorn's default trusted 127.0.0.1 (finding B)
    (True, "127.0.0.1", True),  # a proxy on this machine, trusted by forwarded_allow_ips
    (True, "203.0.113.7", False),  # a client talking to the app directly, past the proxy
])
def test_forwarded_headers_are_believed_only_from_a_trusted_proxy(web_settings, demo_engine, trust, peer, believed):
    settings = dataclasses.replace(web_settings, trust_proxy_headers=trust, forwarded_allow_ips="127.0.0.1", signin_attempts_per_minute=3)
    client = TestClient(create_app(settings, demo_engine).fastapi, base_url="http://127.0.0.1:7860", client=(peer, 50000))
    registered = client.post("/auth/register", json={"username": "proto", "password": "long enough pw"},
                             headers={"x-forwarded-proto": "https", "x-forwarded-for": "192.0.2.50"})
    assert registered.status_code == 200
    assert ("Secure" in registered.headers["set-cookie"]) is believed  # it made the cookie Secure over http
    client.cookies.clear()
    statuses = [
        client.post("/auth/login", json={"username": "nobody", "password": "wrong password"},
                    headers={"x-forwarded-for": f"198.51.100.{n}"}).status_code
        for n in range(5)
    ]
    assert statuses == ([400] * 5 if believed else [400, 400, 429, 429, 429])  # five addresses, or one


def test_the_handlers_read_the_one_session_cookie_the_edge_accepted(client):
    """Finding E: Starlette's request.cookies keeps the last of two cookies, the edge took the first."""
    post(client, "register", "alice")
    token = client.cookies["gemma_session"]
    client.cookies.clear()
    both = {"cookie": f"gemma_session={token}; gemma_session=another-token-that-is-long-enough"}
    assert client.get("/statement.csv", headers=both).status_code == 400
    assert client.get("/statement.csv", headers={"cookie": f"gemma_session={token}"}).status_code == 200
