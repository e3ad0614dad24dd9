"""Authorization over HTTP: every event the app registers, called as nobody, as a non-admin, as another user.

The endpoints are read from the running app's own /config, so an endpoint added later is attacked
too. Hidden components and private API names protect nothing (docs FIELD_NOTES): each call goes
straight to the queue by its index, as a hostile client would send it. Signing in and out are the
app's own /auth routes (not Gradio events); they are attacked here too.
"""

from __future__ import annotations

import json
import re

import pytest

from .conftest import query, scalar, session, signed_up, snapshot, start_app
from .gradio_http import GradioSession, endpoint_index

pytestmark = pytest.mark.slow

# Entry points meant for callers without a session: they refuse bad credentials with a message.
SIGN_IN_ROUTES = ["login", "register"]
# Harmless without a session: they only return the signed-out screen (the page's load event, the
# session timer's tick, Stop). Anything else must refuse a caller without a session.
SIGNED_OUT_NO_OPS = {"restore", "check_session", "stop"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """Default bcrypt cost (12), so the hashes checked below are the ones a real install writes."""
    running = start_app(tmp_path_factory.mktemp("authz"), GEMMA_CHAT_BCRYPT_ROUNDS="12")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def alice(app):
    """The first account (so the admin), with a chat, a top-up and an error on record."""
    client = signed_up(app, "alice")
    reply = client.chat("mini", "alice-secret: what is the capital of France?")
    assert reply.charged == 1, reply.text
    assert "Added 913 credits" in client.top_up(913)
    client.answer = reply.text.split("\n\n— ")[0]
    return client


@pytest.fixture(scope="module")
def bob(app, alice):
    return signed_up(app, "bob")


def endpoints(client) -> list[tuple[int, str]]:
    return [(index, str(dep.get("api_name"))) for index, dep in enumerate(client.config["dependencies"]) if dep.get("backend_fn")]


def carries_nothing(value) -> bool:
    """Outputs of the signed-out screen: empty values and visibility switches only."""
    if value in (None, "", [], ()):
        return True
    if isinstance(value, dict):
        return value.get("__type__") == "update" and set(value) <= {"__type__", "visible"}
    return False


def admin_endpoints(config) -> list[int]:
    """The events triggered from the Admin tab or anything inside it, found in the app's layout."""
    admin_tab = next(c["id"] for c in config["components"] if c["type"] == "tabitem" and c["props"].get("id") == "admin")

    def inside(node, found):
        found.add(node["id"])
        for child in node.get("children", []):
            inside(child, found)
        return found

    def find(node):
        if node["id"] == admin_tab:
            return inside(node, set())
        for child in node.get("children", []):
            if (result := find(child)) is not None:
                return result
        return None

    ids = find(config["layout"])
    return [i for i, dep in enumerate(config["dependencies"]) if any(target in ids for target, _ in dep["targets"])]


def test_every_endpoint_refuses_a_caller_without_a_session(app, alice, bob):
    before = snapshot(app.data_dir)
    probe = session(app)
    checked = endpoints(probe)
    # 50 events run on the server today; sign-in, registration and the two log-outs are /auth routes.
    assert len(checked) >= 50, "the app's config should list every event"
    assert {"chat", "regenerate", "edit_last_message"} <= {name for _, name in checked}
    for index, name in checked:
        outcome = session(app).call_with_placeholders(index)  # a fresh session each: never signed in
        shown = json.dumps(outcome.data) + str(outcome.error)
        assert "alice" not in shown and "bob" not in shown, (name, shown)
        if name in SIGNED_OUT_NO_OPS or name.startswith("restore_after_log_out"):  # the load event's callback again
            assert outcome.ok and all(carries_nothing(value) for value in outcome.data), (name, outcome)
        elif outcome.ok:  # refused inside the outputs, like the Top up tab's message
            assert any(isinstance(v, str) and "Please log in" in v for v in outcome.data), (name, outcome)
        else:
            assert "log in" in (outcome.error or ""), (name, outcome)
        assert snapshot(app.data_dir) == before, f"{name} changed the database without a session"
    for route in SIGN_IN_ROUTES:  # bad credentials: a message, no cookie, nothing written
        client = session(app)
        message = client.login("alice", "x") if route == "login" else client.register("x", "x")
        assert message and "gemma_session" not in client.http.cookies, (route, message)
        assert snapshot(app.data_dir) == before, f"/auth/{route} changed the database"
    for route in ["logout", "logout-all"]:  # without a session: nothing to end, nothing changed
        response = session(app).http.post(app.url + "auth/" + route)
        assert response.status_code == 200 and "alice" not in response.text
    assert snapshot(app.data_dir) == before


def test_every_admin_endpoint_refuses_a_non_admin(app, alice, bob):
    admin_only = admin_endpoints(bob.config)
    assert len(admin_only) >= 3  # the tab itself, Refresh, and the error table
    # A row menu's request, its dialog's button (every account action), Create user, a model's restart.
    account_actions = ["admin_account_request", "admin_account_action", "admin_create_user", "restart_model"]
    assert {endpoint_index(bob.config, name) for name in account_actions} <= set(admin_only)
    before = snapshot(app.data_dir)
    for index in admin_only:
        outcome = bob.call_with_placeholders(index)
        assert not outcome.ok and outcome.error == "Administrators only.", (index, outcome)
    assert snapshot(app.data_dir) == before
    report = alice.call("admin_report", "", "")  # the same endpoint answers the admin
    assert report.ok and "bob" in json.dumps(report.data)
    bob_id = scalar(app.data_dir, "SELECT id FROM users WHERE username = 'bob'")
    asked = alice.call("admin_account_request", f"grant:{bob_id}:1", "", None)  # the row's menu: asks, acts not
    assert asked.ok and "Grant credits to **bob** (balance 10); a negative number corrects." in asked.data
    granted = alice.call("admin_account_action", None, 5, "thanks", "", "", None)  # the dialog's button
    assert granted.ok and "Granted +5 credits to bob; balance now 15." in granted.data
    assert query(app.data_dir, "SELECT actor_name, action FROM admin_actions") == [("alice", "grant")]


def test_no_endpoint_shows_a_user_anything_of_another_user(app, alice, bob):
    secrets = ["alice", "alice-secret", "+913", alice.answer]
    admin_only = set(admin_endpoints(bob.config))
    for index, name in endpoints(bob):
        if index in admin_only:
            continue
        outcome = bob.call_with_placeholders(index, dropdown="mini")
        shown = json.dumps(outcome.data, ensure_ascii=False) + str(outcome.error)
        leaked = [s for s in secrets if s and s in shown]
        assert not leaked, (name, leaked, shown[:500])
    # bob chatted "x" through the placeholders: his own history has his rows only
    rows = query(app.data_dir, "SELECT u.username FROM interactions i JOIN users u ON u.id = i.user_id WHERE i.prompt = 'x'")
    assert rows and {r[0] for r in rows} == {"bob"}


def test_repeated_failed_logins_lock_the_account(app, alice):
    signed_up(app, "carol", "carol's password")
    client = session(app)
    messages = [client.login("carol", f"wrong password {n}") for n in range(5)]
    assert messages[:4] == ["Wrong username or password."] * 4
    assert messages[4].startswith("Too many failed attempts. Try again at")
    locked = client.login("carol", "carol's password")  # even the right password, from this client
    assert locked.startswith("Too many failed attempts") and "gemma_session" not in client.http.cookies
    assert scalar(app.data_dir, "SELECT locked_until IS NOT NULL FROM login_throttles WHERE username_key = 'carol'") == 1
    assert session(app).login("alice") == ""  # other accounts are unaffected
    # The lock-out is this client's: carol signs in from her own address (tests/reliability/test_edge.py).
    assert GradioSession(app.url, local_address="127.0.0.2").login("carol", "carol's password") == ""


def test_password_hashes_are_bcrypt_with_cost_at_least_12(app, alice, bob):
    hashes = query(app.data_dir, "SELECT username, password_hash FROM users")
    assert len(hashes) >= 2
    for username, password_hash in hashes:
        match = re.fullmatch(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}", password_hash)
        assert match and int(match.group(1)) >= 12, (username, password_hash)
        assert "long enough pw" not in password_hash
