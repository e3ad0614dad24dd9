"""The Admin tab's account actions other than Grant against anything a client can send (issue 11: ≥500
examples each): disable, enable and unlock here; promote, demote and set a password in
test_admin_roles_fuzz.py, with the same checks (`AccountActions`). Every example runs each of its
file's actions once, in a drawn order, each with its own drawn caller and input.

Each action runs as its dialog's button runs it (ui/admin/users.py act_on_account), on the account named
by whatever name it is handed: the row menus' request and its checks are test_ui_confirm_fuzz.py's. The
new password, the search and the page are whatever a page (or a script reusing its session) posts; the caller is mostly root, an administrator, and sometimes bob (an administrator
only while root has promoted him), a browser without a session or one with a forged cookie. Each
action is checked against what it should do:

- a caller who is not a signed-in, enabled administrator is refused with a popup and changes nothing;
- an administrator's action on an unknown account, with an invalid password, or that would leave no
  enabled administrator is refused with a message and changes nothing;
- any other action changes only the account it names, exactly as it says (a role, a state, a
  password; the sessions it ends), and leaves one audit row naming the administrator; no money moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import browser_request, fuzz_examples
from gemma_chat.accounts import admin, auth, sessions
from gemma_chat.billing import ledger
from gemma_chat.store.db import database
from gemma_chat.errors import PermissionDeniedError, ValidationError
from gemma_chat.ui import ChatApp

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=fuzz_examples(500), deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ACTIONS = ["disable", "enable", "promote", "demote", "unlock", "set_password"]
AUDITED_AS = {"set_password": "reset_password"}  # the audit table's code, where it differs from the menu's
PEOPLE = ["root", "bob", "carol"]

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=80),
    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
hostile_text = st.one_of(
    st.text(st.characters(codec=None, categories=None), max_size=40),  # every code point, surrogates too
    st.sampled_from(["", " ", "nobody", "root\x00", "bob'; --", "\ud800", "ｂｏｂ", "x" * 100_000, "%", "_"]),
)


def mostly(usual, rare, percent: int = 75):
    return st.integers(0, 99).flatmap(lambda n: usual if n < percent else rare)


def world_rows() -> dict:
    """Everything an account action could change."""
    query = database.execute_sql
    return {
        "users": query(
            "SELECT id, username, is_admin, is_disabled, password_hash, balance, held FROM users ORDER BY id"
        ).fetchall(),
        "sessions": query("SELECT id, user_id FROM sessions WHERE revoked_at IS NULL ORDER BY id").fetchall(),  # the live ones
        "throttles": query(
            "SELECT username_key, client, failures, locks, locked_until FROM login_throttles ORDER BY username_key, client"
        ).fetchall(),
        "ledger": query("SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM ledger_entries").fetchone(),
        "actions": query("SELECT COUNT(*) FROM admin_actions").fetchone()[0],
    }


def without(rows: list[tuple], user_id: int, column: int = 0) -> list[tuple]:
    return [row for row in rows if row[column] != user_id]


def enabled_admins() -> int:
    return database.execute_sql("SELECT COUNT(*) FROM users WHERE is_admin AND NOT is_disabled").fetchone()[0]


def account(name) -> Account | None:
    """The account a name given to an action means (as auth.find_user: case and spaces aside)."""
    if not isinstance(name, str) or not name.strip().isascii():
        return None
    row = database.execute_sql(
        "SELECT id, username, is_admin, is_disabled, password_hash FROM users WHERE lower(username) = ?", (name.strip().lower(),)
    ).fetchone()
    return Account(row[0], row[1], bool(row[2]), bool(row[3]), row[4]) if row else None


def account_by_id(user_id: int) -> Account:
    username = database.execute_sql("SELECT username FROM users WHERE id = ?", (user_id,)).fetchone()[0]
    return account(username)


def locked(username: str) -> bool:
    return bool(auth.locked_clients(username))


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    is_admin: bool
    is_disabled: bool
    password_hash: str


def expected_message(action: str, user: Account) -> str:
    role = "an administrator" if user.is_admin else "a user"
    state = "disabled" if user.is_disabled else "active"
    if action == "set_password":
        return f"New password set for {user.username}; their sessions have ended."
    done = {
        "disable": "disabled (signed out everywhere; API keys stopped)", "enable": "enabled", "promote": "promoted",
        "demote": "demoted (signed out everywhere)", "unlock": "unlocked",
    }[action]
    return f"{user.username} {done}: now {role}, {state}."


@pytest.fixture
def app(settings, database):
    for name in PEOPLE:
        auth.register_user(settings, name, "long enough pw")  # root first: the administrator
    return ChatApp(settings, engine=None)  # the Users section never generates


def step(action: str):
    """One action with what a client might send it: the caller, the account, the password, the paging."""
    return st.fixed_dictionaries({
        "caller": mostly(st.just("root"), st.sampled_from(["bob", "bob", "nobody", "forged"]), 80),
        "action": st.just(action),
        "target": mostly(st.sampled_from(["bob", " BOB ", "carol", "Carol", "root"]), st.one_of(hostile_text, anything)),
        "password": mostly(st.from_regex(r"[ -~]{8,30}", fullmatch=True), st.one_of(hostile_text, anything)),
        "search": mostly(st.sampled_from(["", "o"]), anything),
        "page": mostly(st.just(1), anything),
    })


def each_once(actions: list[str]):
    """Every action of `actions` once, in a drawn order: each handler gets every example."""
    return st.permutations(actions).flatmap(lambda order: st.tuples(*(step(action) for action in order)))


class AccountActions:
    """Runs account actions as a browser would and checks each against what it should do."""

    def __init__(self, app, settings):
        self.app, self.settings = app, settings
        self.tokens: dict[str, str] = {}
        self.seen = {action: 0 for action in ACTIONS} | {"refused": 0, "not an admin": 0}

    def start(self, lock_carol: bool) -> None:
        """Each example starts from the same roles: root the one administrator, everyone enabled and signed in."""
        for name in PEOPLE:
            user = account(name)
            if user.is_admin != (name == "root"):
                admin.set_admin(None, name, name == "root")
            if user.is_disabled:
                admin.set_disabled(None, name, False)
            if name not in self.tokens or sessions.resolve_session(self.settings, self.tokens[name], touch=False) is None:
                self.tokens[name] = sessions.create_session(self.settings, user.id)
        if lock_carol and not locked("carol"):
            for n in range(self.settings.lockout_attempts):
                with pytest.raises(Exception):
                    auth.login(self.settings, "carol", f"wrong password {n}", client="203.0.113.9")

    def request_of(self, caller: str):
        if caller == "nobody":
            return browser_request(None)
        if caller == "forged":
            return browser_request("a forged token of the right length.....")
        return browser_request(self.tokens[caller])

    def act(self, caller, action, target, password, search, page) -> None:
        app, seen = self.app, self.seen
        request = self.request_of(caller)
        signed_in = sessions.resolve_session(self.settings, request.cookies.get("gemma_session"), touch=False)
        is_admin = signed_in is not None and signed_in.user.is_admin and not signed_in.user.is_disabled
        named = account(target)  # the account the action names, as it is now
        last_admin = named is not None and named.is_admin and not named.is_disabled and enabled_admins() == 1
        before = world_rows()
        call = lambda: app.act_on_account(request, action, target, search, page, password=password)  # noqa: E731

        if not is_admin:
            with pytest.raises(PermissionDeniedError) as refused:  # the wiring shows it as a popup
                call()
            assert refused.value.message in (
                "Administrators only.", "Please log in.", "Your session has expired; please log in again.",
                "This account is disabled. Ask an administrator to enable it.",  # the acting admin was disabled
            )
            assert world_rows() == before
            seen["not an admin"] += 1
            return

        shown = call()
        # A refused password is said in its dialog, which stays open to fix it; anything else above the table.
        message = shown.get("users_message") or shown.get("account_dialog_message")
        assert isinstance(message, str) and message.strip() and "Something went wrong" not in message
        # The password box is emptied whatever happened (and hidden with its dialog when that closes).
        assert shown.get("admin_password", "") in ("", {"__type__": "update", "value": "", "visible": False})
        assert "users_table" in shown or set(shown) == {"account_dialog_message", "admin_password"}
        assert enabled_admins() >= 1  # no administrator in the app can leave it without one

        password_ok = True
        if action == "set_password":
            try:
                auth.validate_password(password)
            except ValidationError:
                password_ok = False
        if named is None or not password_ok or (action in ("disable", "demote") and last_admin):
            assert message.startswith("⚠") and world_rows() == before
            seen["refused"] += 1
            return

        after = world_rows()
        user = account_by_id(named.id)
        assert message == expected_message(action, user)
        # Exactly one audit row, naming the administrator, the action and the account.
        assert after["actions"] == before["actions"] + 1
        assert database.execute_sql(
            "SELECT actor_id, actor_name, action, target_id FROM admin_actions ORDER BY id DESC LIMIT 1"
        ).fetchone() == (signed_in.user.id, signed_in.user.username, AUDITED_AS.get(action, action), named.id)
        # Only the named account changed, as the action says; no money moved.
        assert without(after["users"], named.id) == without(before["users"], named.id)
        assert after["ledger"] == before["ledger"]
        if action == "set_password":
            assert auth.password_matches(password, user.password_hash)
        else:
            assert user.password_hash == named.password_hash
        if action == "unlock":
            assert not locked(user.username)
        else:
            assert after["throttles"] == before["throttles"]
        assert (user.is_admin, user.is_disabled) == {
            "disable": (named.is_admin, True), "enable": (named.is_admin, False), "promote": (True, named.is_disabled),
            "demote": (False, named.is_disabled),
        }.get(action, (named.is_admin, named.is_disabled))
        # Sessions: the named account's end when the action says so; nobody else's change.
        ends_sessions = action in ("disable", "set_password") or (action == "demote" and named.is_admin)
        assert without(after["sessions"], named.id, 1) == without(before["sessions"], named.id, 1)
        mine = [row for row in after["sessions"] if row[1] == named.id]
        assert mine == [] if ends_sessions else mine == [row for row in before["sessions"] if row[1] == named.id]
        seen[action] += 1

    def check_totals(self, actions: list[str]) -> None:
        seen = self.seen
        assert all(seen[action] >= 150 for action in actions) and seen["refused"] >= 200, seen
        assert seen["not an admin"] >= 100 and sum(seen.values()) >= 500 * len(actions), seen
        assert ledger.verify_ledger() == []


def test_disable_enable_and_unlock_change_only_the_named_account_as_they_say(app, settings):
    actions = AccountActions(app, settings)

    @FUZZ
    @given(steps=each_once(["disable", "enable", "unlock"]), lock_carol=st.integers(0, 9).map(lambda n: n == 0))
    def example(steps, lock_carol):
        actions.start(lock_carol)
        for one in steps:
            actions.act(**one)

    example()
    actions.check_totals(["disable", "enable", "unlock"])
