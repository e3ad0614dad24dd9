"""Administrator actions (accounts/admin.py) on a real SQLite file: each action, its audit row, the re-check of
the acting administrator, the last-administrator guard, and the Admin tab's Users section callbacks."""

from __future__ import annotations


import pytest

from conftest import browser_request, live_sessions, signed_in_request
from gemma_chat.accounts import admin, auth, keys, sessions
from gemma_chat.billing import ledger
from gemma_chat.store import db
from gemma_chat.store.db import AdminAction, LedgerEntry, User
from gemma_chat.errors import (
    LastAdministratorError,
    NotLoggedInError,
    PermissionDeniedError,
    UsernameTakenError,
    ValidationError,
)
from gemma_chat.ui import ChatApp
from gemma_chat.ops.verify import verify_database

pytestmark = pytest.mark.both_engines


@pytest.fixture
def people(settings, database):
    """root (the first account, so an administrator) and bob, each signed in once."""
    root = auth.register_user(settings, "root", "long enough pw")
    bob = auth.register_user(settings, "bob", "long enough pw")
    for user in (root, bob):
        sessions.create_session(settings, user.id)
    return root, bob


def audit() -> list[tuple]:
    return [
        (a.actor_name, a.action, a.target.username if a.target else None, a.detail)
        for a in AdminAction.select().order_by(AdminAction.id)
    ]


def test_a_grant_is_a_ledger_entry_naming_the_admin_and_an_audit_row(settings, people):
    root, bob = people
    entry = admin.grant_credits(root.id, "bob", 25, "  welcome   back ")
    assert entry.balance_after == 35 and ledger.get_balance(bob.id).balance == 35
    row = LedgerEntry.select().order_by(LedgerEntry.id.desc()).get()
    assert (row.kind, row.amount, row.actor_id, row.note) == ("grant", 25, root.id, "welcome back")
    assert audit() == [("root", "grant", "bob", "+25 credits: welcome back")]
    admin.grant_credits(root.id, "bob", "-5")  # a correction, typed as text
    assert ledger.get_balance(bob.id).balance == 30
    assert verify_database(settings) == []


@pytest.mark.parametrize("note", ["\ud800", "a\x00b", "\x1b[31m", "x" * 201])
def test_a_bad_note_is_refused(people, note):
    root, bob = people
    with pytest.raises(ValidationError, match="note"):
        admin.grant_credits(root.id, "bob", 5, note)
    assert ledger.get_balance(bob.id).balance == 10 and audit() == []


@pytest.mark.parametrize("amount", [0, "five", 2.5, None, True, 10**7])
def test_a_bad_grant_is_refused_and_nothing_is_written(people, amount):
    root, bob = people
    with pytest.raises(ValidationError, match="non-zero whole number"):
        admin.grant_credits(root.id, "bob", amount)
    assert ledger.get_balance(bob.id).balance == 10 and audit() == []


def test_disable_ends_sessions_and_api_keys_and_enable_restores_sign_in(settings, people):
    root, bob = people
    token = sessions.create_session(settings, bob.id)
    _, key = keys.create_key(bob.id, "script")
    assert keys.resolve_key(key).id == bob.id
    disabled = admin.set_disabled(root.id, "bob", True)
    assert disabled.is_disabled and live_sessions(bob.id, settings) == 0
    assert sessions.resolve_session(settings, token) is None and keys.resolve_key(key) is None
    with pytest.raises(Exception, match="disabled"):
        auth.login(settings, "bob", "long enough pw")
    admin.set_disabled(root.id, "bob", False)
    assert auth.login(settings, "bob", "long enough pw").username == "bob"
    assert keys.resolve_key(key).id == bob.id  # the key itself was never revoked
    assert audit() == [("root", "disable", "bob", ""), ("root", "enable", "bob", "")]


def test_promote_demote_unlock_and_reset_password(settings, people):
    root, bob = people
    assert admin.set_admin(root.id, "bob", True).is_admin
    demoted = admin.set_admin(root.id, "bob", False)
    assert not demoted.is_admin and live_sessions(bob.id, settings) == 0
    for n in range(settings.lockout_attempts):
        with pytest.raises(Exception):
            auth.login(settings, "bob", f"wrong password {n}")
    assert auth.locked_clients("bob")
    assert [r.state for r in admin.list_accounts("bob")[0]] == ["locked"]
    admin.unlock(root.id, "bob")
    assert auth.locked_clients("bob") == []
    sessions.create_session(settings, bob.id)
    admin.reset_password(settings, root.id, "bob", "a brand new password")
    assert live_sessions(bob.id, settings) == 0
    assert auth.login(settings, "bob", "a brand new password").username == "bob"
    with pytest.raises(ValidationError, match="at least 8"):
        admin.reset_password(settings, root.id, "bob", "short")
    assert audit() == [
        ("root", "promote", "bob", ""), ("root", "demote", "bob", ""), ("root", "unlock", "bob", ""),
        ("root", "reset_password", "bob", ""),
    ]
    stored = [detail for (detail,) in db.database.execute_sql("SELECT detail FROM admin_actions")]
    assert not any("brand new" in detail for detail in stored)


def test_an_admin_creates_an_account_even_with_registration_closed(settings, people):
    root, _ = people
    created = admin.create_user(settings, root.id, "carol", "long enough pw")
    assert (created.username, created.balance, created.is_admin) == ("carol", 10, False)
    with pytest.raises(UsernameTakenError):
        admin.create_user(settings, root.id, "CAROL", "long enough pw")
    assert audit() == [("root", "create_user", "carol", "")]


def test_a_demoted_or_disabled_admin_acts_no_more(settings, people):
    root, bob = people
    admin.set_admin(root.id, "bob", True)
    admin.set_admin(bob.id, "root", False)  # bob, now an admin, demotes root
    for action in (
        lambda: admin.grant_credits(root.id, "root", 100),
        lambda: admin.set_admin(root.id, "root", True),
        lambda: admin.set_disabled(root.id, "bob", True),
        lambda: admin.create_user(settings, root.id, "mallory", "long enough pw"),
    ):
        with pytest.raises(PermissionDeniedError, match="Administrators only"):
            action()
    assert not User.get_by_id(root.id).is_admin and User.get_by_id(bob.id).is_admin
    assert ledger.get_balance(root.id).balance == 10
    assert [a.action for a in AdminAction.select()] == ["promote", "demote"]


def test_the_last_administrator_cannot_demote_or_disable_themselves(settings, people):
    root, bob = people
    for action, verb in ((lambda: admin.set_admin(root.id, "root", False), "demote"),
                         (lambda: admin.set_disabled(root.id, "root", True), "disable")):
        with pytest.raises(LastAdministratorError, match=f"Cannot {verb} root: they are the only enabled administrator"):
            action()
    assert User.get_by_id(root.id).is_admin and not User.get_by_id(root.id).is_disabled
    admin.set_admin(root.id, "bob", True)
    admin.set_admin(root.id, "root", False)  # another administrator is left: allowed
    assert audit()[-1] == ("root", "demote", "root", "")
    # The command line is how one recovers, so it is not held back.
    admin.set_admin(None, "bob", False)
    assert User.select().where(User.is_admin == True).count() == 0  # noqa: E712
    assert audit()[-1] == ("command line", "demote", "bob", "")


def test_admin_actions_are_append_only(settings, people):
    root, _ = people
    admin.unlock(root.id, "bob")
    refused = ["UPDATE admin_actions SET actor_name = 'someone'", "DELETE FROM admin_actions"]
    if db.dialect().name == "postgresql":
        refused.append("TRUNCATE admin_actions")
    for statement in refused:
        with pytest.raises(Exception, match="append-only"):
            db.database.execute_sql(statement)
    assert db.database.execute_sql("SELECT COUNT(*) FROM admin_actions").fetchone()[0] == 1


def test_list_accounts_searches_and_pages(settings, people):
    root, bob = people
    for n in range(3):
        auth.register_user(settings, f"bobby{n}", "long enough pw")
    rows, total = admin.list_accounts("BOB", page=1, page_size=2)
    assert total == 4 and [r.username for r in rows] == ["bob", "bobby0"]
    rows, _ = admin.list_accounts("bob", page=2, page_size=2)
    assert [r.username for r in rows] == ["bobby1", "bobby2"]
    first = admin.list_accounts("root")[0][0]
    assert (first.balance, first.held, first.role, first.state, first.requests) == (10, 0, "admin", "active", 0)
    assert first.last_login_at is not None  # signed in by signing up (the people fixture)
    assert admin.list_accounts("bobby0")[0][0].last_login_at is None  # registered here without a session
    assert admin.list_accounts("%")[1] == 0  # a search is text, not a pattern
    assert admin.list_accounts("\ud800") == ([], 0) and admin.list_accounts("bób") == ([], 0)


def test_a_page_past_the_end_is_the_last_page_however_large(settings, people):
    """Found by tests/test_admin_users_fuzz.py: page 2**62 reached SQL's OFFSET, which overflowed."""
    for page in (3, 2**62, 10**30):
        rows, total = admin.list_accounts("", page=page, page_size=1)
        assert (total, [r.username for r in rows]) == (2, ["root"])


# --- the Admin tab's Users section, called as Gradio calls it ---------------------------------


@pytest.fixture
def ui(chat_settings, demo_engine):
    return ChatApp(chat_settings, demo_engine)


def test_the_users_section_lists_accounts_and_acts_as_the_signed_in_admin(ui, chat_settings):
    root = signed_in_request(chat_settings, "root")
    signed_in_request(chat_settings, "bob")
    shown = ui.users_state(root, "", 1)
    assert shown["users_table"]["User"].tolist() == ["bob", "root"]
    assert shown["users_page_label"] == "Page 1 of 1 · 2 accounts"
    granted = ui.grant_account_credits(root, "bob", 15, "prize", "", 1)
    assert granted["users_message"] == "Granted +15 credits to bob; balance now 25."
    assert granted["users_table"].set_index("User").loc["bob", "Balance"] == 25
    assert granted["admin_actions_table"].values.tolist()[0][1:] == ["root", "credits granted", "bob", "+15 credits: prize"]
    assert granted["grant_note"] == ""
    refused = ui.demote_account(root, "root", "", 1)
    assert refused["users_message"].startswith("⚠ Cannot demote root: they are the only enabled administrator")
    disabled = ui.disable_account(root, "bob", "", 1)
    assert disabled["users_table"].set_index("User").loc["bob", "State"] == "disabled"
    reset = ui.reset_account_password(root, "bob", "short", "", 1)
    assert reset["users_message"] == "⚠ A password needs at least 8 characters." and reset["admin_password"] == ""
    refused = ui.create_account(root, "carol", "short", "", 1)  # the dialog stays, with the name, for a retry
    assert refused["users_message"].startswith("⚠") and "create_user_dialog" not in refused
    assert refused["new_user_password"] == "" and "new_username" not in refused
    created = ui.create_account(root, "carol", "long enough pw", "", 1)
    assert created["users_message"] == "Created carol with 10 credits."
    assert created["new_username"] == created["new_user_password"] == "" and not created["create_user_dialog"]["visible"]
    assert ui.users_next(root, "", 2**63)["users_page_label"] == "Page 1 of 1 · 3 accounts"


def test_the_users_section_refuses_no_session_a_non_admin_and_a_demoted_admin(ui, chat_settings):
    root = signed_in_request(chat_settings, "root")
    bob = signed_in_request(chat_settings, "bob")
    with pytest.raises(NotLoggedInError):
        ui.grant_account_credits(browser_request(None), "bob", 5, "", "", 1)
    with pytest.raises(PermissionDeniedError, match="Administrators only"):
        ui.grant_account_credits(bob, "bob", 5, "", "", 1)
    with pytest.raises(PermissionDeniedError, match="Administrators only"):
        ui.users_state(bob, "", 1)
    ui.promote_account(root, "bob", "", 1)
    bob = signed_in_request(chat_settings, "bob", register=False)  # promoted: a fresh session
    ui.demote_account(bob, "root", "", 1)  # root's sessions end with the demotion
    with pytest.raises(NotLoggedInError):
        ui.grant_account_credits(root, "root", 500, "", "", 1)
    # Demoted in the database behind the session's back: the next action is refused all the same.
    User.update(is_admin=False).where(User.username == "bob").execute()
    with pytest.raises(PermissionDeniedError, match="Administrators only"):
        ui.grant_account_credits(bob, "bob", 500, "", "", 1)
    assert ledger.get_balance(auth.find_user("root").id).balance == 10
    assert ledger.get_balance(auth.find_user("bob").id).balance == 10
    assert [a.action for a in AdminAction.select()] == ["promote", "demote"]


def test_top_up_is_refused_on_the_server_when_self_topup_is_off(chat_settings, demo_engine):
    import dataclasses

    ui = ChatApp(dataclasses.replace(chat_settings, self_topup=False), demo_engine)
    alice = signed_in_request(chat_settings, "alice")
    message, _, _ = ui.top_up(alice, 50)
    assert message == "⚠ Top-ups are turned off here; ask an administrator for credits."
    assert ledger.get_balance(alice.user_id).balance == 10


def test_another_account_changes_only_through_the_admin_service(settings, people):
    """The lower writes are not a second door: auth keeps no function that sets a role, a disabled
    flag, a lock-out or another account's password, so no caller can skip the last-administrator
    rule or the admin_actions record (issue 21)."""
    for name in ("set_admin", "set_disabled", "unlock_user", "change_password", "set_password_hash"):
        assert not hasattr(auth, name), name
    admin.set_disabled(None, "bob", True)
    admin.set_disabled(None, "bob", False)
    admin.set_admin(None, "bob", True)
    admin.unlock(None, "bob")
    admin.reset_password(settings, None, "bob", "another long pw")
    assert [row[1] for row in audit()] == ["disable", "enable", "promote", "unlock", "reset_password"]
