"""Administrator actions (accounts/admin.py) on a real SQLite file: each action, its audit row, the re-check of
the acting administrator, the last-administrator guard, and the Admin tab's Users section callbacks."""

from __future__ import annotations


import pytest

from markdown_it import MarkdownIt

from conftest import browser_request, live_sessions, signed_in_request, users_table_rows
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
from gemma_chat.ui import ChatApp, owned
from gemma_chat.ui.markup import as_literal
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


def asked(ui, request, action: str, username: str) -> dict:
    """A click on `action` in the row menu of `username`: the dialog it opens."""
    return ui.account_request(request, f"{action}:{auth.find_user(username).id}:1", "", 1)


def confirmed(ui, request, action: str, username: str, *, amount=None, note="", password="") -> dict:
    """The action asked and then confirmed in its dialog."""
    question = asked(ui, request, action, username)
    return ui.confirm_account_action(request, question["account_target"], amount, note, password, "", 1)


def test_the_users_section_lists_accounts_and_acts_as_the_signed_in_admin(ui, chat_settings):
    root = signed_in_request(chat_settings, "root")
    signed_in_request(chat_settings, "bob")
    shown = ui.users_state(root, "", 1)
    rows = users_table_rows(shown["users_table"])
    assert [row["cells"][:5] for row in rows] == [["bob", "10", "0", "user", "active"], ["root", "10", "0", "admin", "active"]]
    # Each row's menu offers what applies to its account as it is.
    assert [list(row["menu"]) for row in rows] == [
        ["grant", "set_password", "disable", "promote"], ["grant", "set_password", "disable", "demote"],
    ]
    assert rows[0]["menu"]["disable"] == "Disable…" and rows[0]["id"] == auth.find_user("bob").id
    assert shown["users_page_label"] == "Page 1 of 1 · 2 accounts"

    question = asked(ui, root, "grant", "bob")  # asks; nothing is done yet
    assert question["account_dialog"]["visible"] and question["grant_fields"]["visible"]
    assert not question["admin_password"]["visible"] and question["account_confirm"]["value"] == "Grant credits"
    assert question["account_question"] == "Grant credits to **bob** (balance 10); a negative number corrects."
    typo = ui.confirm_account_action(root, question["account_target"], None, "", "", "", 1)  # the dialog stays, the reason in it
    assert typo == {
        "account_dialog_message": "⚠ Credits to grant: a non-zero whole number from -1,000,000 to 1,000,000.", "admin_password": "",
    }
    granted = ui.confirm_account_action(root, question["account_target"], 15, "prize", "", "", 1)
    assert granted["users_message"] == "Granted +15 credits to bob; balance now 25."
    assert not granted["account_dialog"]["visible"] and granted["account_target"]["rows"] == [] and granted["grant_note"] == ""
    assert users_table_rows(granted["users_table"])[0]["cells"][1] == "25"
    assert granted["admin_actions_table"].values.tolist()[0][1:] == ["root", "credits granted", "bob", "+15 credits: prize"]

    refused = confirmed(ui, root, "demote", "root")  # the last administrator: said above the table, the dialog closes
    assert refused["users_message"].startswith("⚠ Cannot demote root: they are the only enabled administrator")
    assert not refused["account_dialog"]["visible"]
    disabled = confirmed(ui, root, "disable", "bob")
    assert disabled["users_message"] == "bob disabled (signed out everywhere; API keys stopped): now a user, disabled."
    bob_row = users_table_rows(disabled["users_table"])[0]
    assert bob_row["cells"][4] == "disabled" and list(bob_row["menu"]) == ["grant", "set_password", "enable", "promote"]
    short = confirmed(ui, root, "set_password", "bob", password="short")
    assert short == {"account_dialog_message": "⚠ A password needs at least 8 characters.", "admin_password": ""}
    assert confirmed(ui, root, "set_password", "bob", password="long enough pw 2")["users_message"] == (
        "New password set for bob; their sessions have ended."
    )

    opened = ui.open_create_user(root)
    assert opened["create_user_dialog"]["visible"] and not opened["account_dialog"]["visible"]  # one dialog at a time
    refused = ui.create_account(root, "carol", "short", "", 1)  # the dialog stays, with the name, for a retry
    assert refused == {"create_user_message": "⚠ A password needs at least 8 characters.", "new_user_password": ""}
    created = ui.create_account(root, "carol", "long enough pw", "", 1)
    assert created["users_message"] == "Created carol with 10 credits."
    assert created["new_username"] == created["new_user_password"] == "" and not created["create_user_dialog"]["visible"]
    assert ui.users_next(root, "", 2**63)["users_page_label"] == "Page 1 of 1 · 3 accounts"


def test_a_row_request_or_confirmation_the_table_did_not_offer_is_said_inline_and_changes_nothing(ui, chat_settings):
    """What a forged page (or a stale one) can send: a made-up action, another id, garbage, an action
    that no longer applies, a confirmation with nothing asked or asked by another administrator."""
    root = signed_in_request(chat_settings, "root")
    bob = signed_in_request(chat_settings, "bob")
    confirmed(ui, root, "promote", "bob")
    bob = signed_in_request(chat_settings, "bob", register=False)  # promoted: a fresh session
    bob_id = auth.find_user("bob").id
    before = audit()
    unknown = "⚠ That action is not one the table offers."
    for value, message in [
        ("frobnicate:1", unknown), (f"delete:{bob_id}", unknown), ("disable:abc", unknown), ("disable:-1", unknown),
        ("disable", unknown), (None, unknown), (12, unknown), (["disable", 1], unknown), ("x" * 10_000, unknown),
        (f"disable:{bob_id}" + "0" * 60, unknown),
        ("disable:0", "⚠ That account was not found."), ("disable:999999", "⚠ That account was not found."),
        ("disable:99999999999999999999", "⚠ That account was not found."),
        (f"enable:{bob_id}", "⚠ “Enable” does not apply to bob as the account is now; the table shows it afresh."),
        (f"promote:{bob_id}", "⚠ “Make administrator” does not apply to bob as the account is now; the table shows it afresh."),
        (f"unlock:{bob_id}", "⚠ “Unlock” does not apply to bob as the account is now; the table shows it afresh."),
    ]:
        shown = ui.account_request(root, value, "", 1)
        assert shown["users_message"] == message, value
        assert not shown["account_dialog"]["visible"] and shown["account_target"]["rows"] == []
        assert "users_table" in shown  # drawn afresh, never marked failed
    nothing_asked = "⚠ Nothing is waiting to be confirmed: choose the action again from the account's ⋯ menu."
    bob_asked = asked(ui, bob, "disable", "root")["account_target"]  # bob's question, not root's
    for state in [None, owned(root.user_id, []), bob_asked, owned(root.user_id, ["drop", bob_id]), owned(root.user_id, ["disable"]),
                  {"user_id": root.user_id, "rows": "disable"}, "disable:2", owned(root.user_id, ["disable", str(bob_id)])]:
        shown = ui.confirm_account_action(root, state, 5, "", "", "", 1)
        assert shown["users_message"] == nothing_asked and not shown["account_dialog"]["visible"], state
    # Asked, then changed by another administrator before the confirmation: refused, as it is now.
    question = asked(ui, root, "disable", "bob")
    confirmed(ui, bob, "disable", "bob")  # bob disables himself (root is still an enabled administrator)
    late = ui.confirm_account_action(root, question["account_target"], None, "", "", "", 1)
    assert late["users_message"] == "⚠ “Disable” does not apply to bob as the account is now; the table shows it afresh."
    assert audit() == before + [("bob", "disable", "bob", "")]
    # A name made before names were checked, which leads by name to another account, is not acted on.
    User.update(username=" root ").where(User.id == bob_id).execute()
    assert ui.account_request(root, f"enable:{bob_id}", "", 1)["users_message"] == "⚠ That account was not found."


def test_names_are_shown_as_typed_in_the_table_menu_and_dialog(ui, chat_settings):
    """A name made before names were checked (or written into the database): no markup, no HTML."""
    root = signed_in_request(chat_settings, "root")
    signed_in_request(chat_settings, "bob")
    hostile = "<img src=x>**b**_[x](y)"  # names are 3 to 32 characters in the database too
    User.update(username=hostile).where(User.username == "bob").execute()
    shown = ui.users_state(root, "", 1)
    assert "<img" not in shown["users_table"] and "&lt;img src=x&gt;" in shown["users_table"]
    row = next(row for row in users_table_rows(shown["users_table"]) if row["cells"][0] == hostile)
    question = ui.account_request(root, f"disable:{row['id']}:1", "", 1)["account_question"]
    assert question == f"Disable **{as_literal(hostile)}**? They are signed out everywhere and their API keys stop working."
    rendered = MarkdownIt("commonmark", {"html": True}).render(question)
    assert "<img" not in rendered and "<a " not in rendered and "&lt;img src=x&gt;**b**_[x](y)" in rendered


def test_the_users_section_refuses_no_session_a_non_admin_and_a_demoted_admin(ui, chat_settings):
    root = signed_in_request(chat_settings, "root")
    bob = signed_in_request(chat_settings, "bob")
    bob_id = bob.user_id
    with pytest.raises(NotLoggedInError):
        ui.account_request(browser_request(None), f"grant:{bob_id}", "", 1)
    with pytest.raises(PermissionDeniedError, match="Administrators only"):
        ui.account_request(bob, f"grant:{bob_id}", "", 1)
    with pytest.raises(PermissionDeniedError, match="Administrators only"):
        ui.confirm_account_action(bob, owned(bob_id, ["grant", bob_id]), 5, "", "", "", 1)
    with pytest.raises(PermissionDeniedError, match="Administrators only"):
        ui.users_state(bob, "", 1)
    confirmed(ui, root, "promote", "bob")
    bob = signed_in_request(chat_settings, "bob", register=False)  # promoted: a fresh session
    root_question = asked(ui, root, "grant", "root")
    confirmed(ui, bob, "demote", "root")  # root's sessions end with the demotion
    with pytest.raises(NotLoggedInError):
        ui.confirm_account_action(root, root_question["account_target"], 500, "", "", "", 1)
    # Demoted in the database behind the session's back: the next action is refused all the same.
    bob_question = asked(ui, bob, "grant", "bob")
    User.update(is_admin=False).where(User.username == "bob").execute()
    with pytest.raises(PermissionDeniedError, match="Administrators only"):
        ui.confirm_account_action(bob, bob_question["account_target"], 500, "", "", "", 1)
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
