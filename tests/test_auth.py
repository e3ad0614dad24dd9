"""Accounts: validation, uniqueness, bcrypt's 72-byte rule, lock-out, first user admin."""

from __future__ import annotations

import dataclasses
import datetime as dt

import bcrypt
import pytest

from gemma_chat.accounts import admin, auth
from gemma_chat.billing import ledger
from gemma_chat.store.db import LedgerEntry, User, utcnow
from gemma_chat.errors import (
    AccountDisabledError,
    AccountLockedError,
    LoginError,
    ThrottledError,
    UsernameTakenError,
    ValidationError,
)

pytestmark = pytest.mark.both_engines


@pytest.mark.parametrize("username", ["ab", "a" * 33, "has space", "dré", "semi;colon", "", "   ", "<b>x</b>", "a\x00bc"])
def test_bad_usernames_are_refused_with_a_reason(settings, database, username):
    with pytest.raises(ValidationError) as raised:
        auth.register_user(settings, username, "long enough pw")
    assert "username" in raised.value.message.lower()
    assert User.select().count() == 0


@pytest.mark.parametrize("username", ["abc", "a" * 32, "Jo.hn_Doe-1"])
def test_good_usernames_are_accepted(settings, database, username):
    assert auth.register_user(settings, username, "long enough pw").username == username


def test_usernames_are_unique_ignoring_case(settings, database):
    auth.register_user(settings, "Alice", "long enough pw")
    with pytest.raises(UsernameTakenError, match="taken"):
        auth.register_user(settings, "aLICE", "another password")
    assert User.select().count() == 1
    assert auth.login(settings, "ALICE", "long enough pw").username == "Alice"


def test_password_rules(settings, database):
    with pytest.raises(ValidationError, match="at least 8"):
        auth.register_user(settings, "alice", "short")
    # 72 bytes is bcrypt's limit: 36 two-byte letters fit, 37 do not, and nothing is truncated.
    auth.register_user(settings, "bob", "é" * 36)
    with pytest.raises(ValidationError, match="72 bytes"):
        auth.register_user(settings, "carol", "é" * 37)
    with pytest.raises(ValidationError, match="72 bytes"):
        auth.register_user(settings, "dave", "x" * 73)
    assert auth.login(settings, "bob", "é" * 36)
    with pytest.raises(LoginError):
        auth.login(settings, "bob", "é" * 36 + "extra")  # bcrypt would have ignored the tail


def test_hashes_are_bcrypt_at_the_configured_cost(data_dir):
    from gemma_chat.config import load_settings
    from gemma_chat.ops.startup import open_data_dir

    settings = load_settings(data_dir=data_dir, env={})
    assert settings.bcrypt_rounds == 12
    open_data_dir(settings)
    user = auth.register_user(settings, "alice", "long enough pw")
    assert user.password_hash.startswith("$2b$12$")
    assert bcrypt.checkpw(b"long enough pw", user.password_hash.encode())
    assert "long enough pw" not in user.password_hash


def test_first_account_is_admin_and_gets_the_starting_balance(settings, database):
    first = auth.register_user(settings, "alice", "long enough pw")
    second = auth.register_user(settings, "bob", "long enough pw")
    assert (first.is_admin, second.is_admin) == (True, False)
    assert second.balance == settings.starting_balance == 10
    entry = LedgerEntry.get(LedgerEntry.user == second.id)
    assert (entry.kind, entry.amount, entry.balance_after) == ("signup", 10, 10)


def test_configured_starting_balance(data_dir):
    from gemma_chat.config import load_settings
    from gemma_chat.ops.startup import open_data_dir

    settings = load_settings(data_dir=data_dir, env={"GEMMA_CHAT_STARTING_BALANCE": "25"}, bcrypt_rounds=4)
    open_data_dir(settings)
    assert auth.register_user(settings, "alice", "long enough pw").balance == 25
    zero = dataclasses.replace(settings, starting_balance=0)
    assert auth.register_user(zero, "bob", "long enough pw").balance == 0
    assert ledger.verify_ledger() == []


def test_unknown_user_and_wrong_password_get_the_same_message(settings, database):
    auth.register_user(settings, "alice", "long enough pw")
    with pytest.raises(LoginError) as unknown:
        auth.login(settings, "nobody", "long enough pw")
    with pytest.raises(LoginError) as wrong:
        auth.login(settings, "alice", "wrong password")
    assert unknown.value.message == wrong.value.message == "Wrong username or password."


def test_unknown_user_still_spends_a_bcrypt_check(settings, database, monkeypatch):
    checks = []
    real_checkpw = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: checks.append(h) or real_checkpw(pw, h))
    with pytest.raises(LoginError):
        auth.login(settings, "nobody", "some password")
    assert len(checks) == 1


def test_lockout_after_five_failures_and_its_expiry(settings, database):
    auth.register_user(settings, "alice", "long enough pw")
    start = utcnow()
    for attempt in range(4):
        with pytest.raises(LoginError) as raised:
            auth.login(settings, "alice", "wrong", now=start + dt.timedelta(seconds=attempt))
        assert not isinstance(raised.value, AccountLockedError)
    with pytest.raises(AccountLockedError) as locked:
        auth.login(settings, "alice", "wrong", now=start + dt.timedelta(seconds=5))
    assert "Try again at" in locked.value.message and "15 minutes" in locked.value.message
    # Locked: even the right password is refused until the lock ends.
    with pytest.raises(AccountLockedError):
        auth.login(settings, "alice", "long enough pw", now=start + dt.timedelta(minutes=10))
    assert auth.login(settings, "alice", "long enough pw", now=start + dt.timedelta(minutes=16)).username == "alice"


def test_failures_outside_the_window_do_not_add_up(settings, database):
    auth.register_user(settings, "alice", "long enough pw")
    start = utcnow()
    for minute in range(0, 80, 16):  # five failures, each in a new 15-minute window
        with pytest.raises(LoginError) as raised:
            auth.login(settings, "alice", "wrong", now=start + dt.timedelta(minutes=minute))
        assert not isinstance(raised.value, AccountLockedError)


def test_unlock_ends_a_lockout(settings, database):
    auth.register_user(settings, "alice", "long enough pw")
    for _ in range(5):
        with pytest.raises(LoginError):
            auth.login(settings, "alice", "wrong")
    with pytest.raises(AccountLockedError):
        auth.login(settings, "alice", "long enough pw")
    admin.unlock(None, "alice")
    assert auth.login(settings, "alice", "long enough pw")


def test_disabled_accounts_cannot_log_in(settings, database):
    auth.register_user(settings, "alice", "long enough pw")
    admin.set_disabled(None, "alice", True)
    with pytest.raises(AccountDisabledError, match="disabled"):
        auth.login(settings, "alice", "long enough pw")
    admin.set_disabled(None, "alice", False)
    assert auth.login(settings, "alice", "long enough pw")


@pytest.mark.parametrize("username, password", [(None, None), ("", ""), ("alice", None), (123, "x"), ("alice", "\x00" * 10)])
def test_malformed_login_input_is_a_login_error(settings, database, username, password):
    auth.register_user(settings, "alice", "long enough pw")
    with pytest.raises(LoginError):
        auth.login(settings, username, password)


def test_a_lockout_is_per_client(settings, database):
    auth.register_user(settings, "alice", "long enough pw")
    for _ in range(4):
        with pytest.raises(LoginError):
            auth.login(settings, "alice", "wrong", client="203.0.113.9")
    with pytest.raises(AccountLockedError):
        auth.login(settings, "alice", "wrong", client="203.0.113.9")
    with pytest.raises(AccountLockedError):  # the stranger's client stays locked, even with the right password
        auth.login(settings, "alice", "long enough pw", client="203.0.113.9")
    assert auth.login(settings, "alice", "long enough pw", client="192.0.2.1").username == "alice"
    assert [client for client, _ in auth.locked_clients("alice")] == ["203.0.113.9"]


def test_a_repeated_lockout_lasts_twice_as_long(settings, database):
    auth.register_user(settings, "alice", "long enough pw")
    start = utcnow()
    ends = []
    for round_start in (start, start + dt.timedelta(hours=1)):
        for n in range(5):
            try:
                auth.login(settings, "alice", "wrong", client="c", now=round_start + dt.timedelta(seconds=n))
            except AccountLockedError as locked:
                ends.append(locked.retry_at - (round_start + dt.timedelta(seconds=n)))
            except LoginError:
                pass
    assert ends == [dt.timedelta(minutes=15), dt.timedelta(minutes=30)]


def test_a_locked_out_client_costs_no_bcrypt(settings, database, monkeypatch):
    auth.register_user(settings, "alice", "long enough pw")
    for _ in range(5):
        with pytest.raises(LoginError):
            auth.login(settings, "alice", "wrong", client="c")
    checks = []
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: checks.append(1))
    with pytest.raises(AccountLockedError):
        auth.login(settings, "alice", "long enough pw", client="c")
    assert checks == []


def test_unknown_names_lock_out_too_so_a_lockout_reveals_no_account(settings, database):
    for _ in range(4):
        with pytest.raises(LoginError):
            auth.login(settings, "nobody", "wrong", client="c")
    with pytest.raises(AccountLockedError):
        auth.login(settings, "nobody", "wrong", client="c")


def test_a_crowd_guessing_one_account_is_slowed_but_not_its_known_clients(settings, database):
    auth.register_user(settings, "alice", "long enough pw")
    auth.login(settings, "alice", "long enough pw", client="alice-laptop")
    start = utcnow()
    threshold = settings.lockout_attempts * auth.SPREAD_ATTACK_FACTOR
    for n in range(threshold):  # many clients, a few guesses each: none of them locked out on its own
        with pytest.raises(LoginError) as raised:
            auth.login(settings, "alice", "wrong", client=f"guesser{n // 2}", now=start)
        assert not isinstance(raised.value, AccountLockedError)
    with pytest.raises(ThrottledError, match="try again in"):
        auth.login(settings, "alice", "wrong", client="a new guesser", now=start)
    # The owner's known client is not slowed down by the crowd.
    assert auth.login(settings, "alice", "long enough pw", client="alice-laptop", now=start).username == "alice"
