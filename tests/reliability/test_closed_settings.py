"""allow_registration = false and self_topup = false, attacked over raw HTTP: the server refuses, not
only the page. Accounts come from the command line and from an administrator's Create user."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, run_env

from .conftest import balance, query, session, snapshot, start_app

pytestmark = pytest.mark.slow

CLOSED = {"GEMMA_CHAT_ALLOW_REGISTRATION": "false", "GEMMA_CHAT_SELF_TOPUP": "false"}


@pytest.fixture(scope="module")
def closed_app(tmp_path_factory):
    directory = tmp_path_factory.mktemp("closed")
    created = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "users", "create", "root", "--admin", "--password-stdin"],
        input="long enough pw\n", capture_output=True, text=True, env=run_env(directory / "data", **CLOSED), timeout=120,
    )
    assert created.returncode == 0, created.stderr
    running = start_app(directory, **CLOSED)
    yield running
    running.stop()


def test_registration_is_refused_by_the_server_and_absent_from_the_page(closed_app):
    before = snapshot(closed_app.data_dir)
    client = session(closed_app)
    response = client.post_form("register", "mallory", "long enough pw")
    assert response.status_code == 400
    assert response.json() == {"ok": False, "message": "Registration is closed; ask an administrator for an account."}
    assert "gemma_session" not in client.http.cookies
    assert snapshot(closed_app.data_dir) == before
    def visible(key):  # a button's label is a translation key in the config (ui/text.py)
        (button,) = [c for c in client.config["components"] if c["type"] == "button" and f'"key": "{key}"' in str(c["props"].get("value"))]
        return button["props"].get("visible")

    assert visible("log_in") is True and visible("create_account") is False


def test_an_admin_creates_the_account_and_top_up_is_refused_by_the_server(closed_app):
    root = session(closed_app)
    assert root.login("root") == ""
    made = root.call("admin_create_user", "member", "member's password", "", None)
    assert made.ok and "Created member with 10 credits." in made.data, made
    actions = query(closed_app.data_dir, "SELECT actor_name, action FROM admin_actions ORDER BY id")
    assert actions == [("command line", "create_user"), ("root", "create_user")]

    member = session(closed_app)
    assert member.login("member", "member's password") == ""
    before = snapshot(closed_app.data_dir)
    for amount in (5, "5", 1000):
        assert member.top_up(amount) == "⚠ Top-ups are turned off here; ask an administrator for credits."
    assert snapshot(closed_app.data_dir) == before and balance(closed_app.data_dir, "member") == (10, 0)

    member_id = query(closed_app.data_dir, "SELECT id FROM users WHERE username = 'member'")[0][0]
    assert root.call("admin_account_request", f"grant:{member_id}:1", "", None).ok  # the row's menu
    granted = root.call("admin_account_action", None, 40, "by request", "", "", None)  # its dialog's button
    assert granted.ok and "Granted +40 credits to member; balance now 50." in granted.data, granted
    assert balance(closed_app.data_dir, "member") == (50, 0)
    as_member = [("admin_account_request", (f"grant:{member_id}:1", "", None)), ("admin_account_action", (None, 40, "", "", "", None))]
    for event, data in as_member:  # the same events, as a non-admin
        refused = member.call(event, *data)
        assert not refused.ok and refused.error == "Administrators only."
    assert balance(closed_app.data_dir, "member") == (50, 0)
