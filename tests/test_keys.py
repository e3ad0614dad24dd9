"""API keys: made once and shown once, stored hashed, revoked at once, dead with a disabled user."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, run_env
from gemma_chat.accounts import admin, auth, keys
from gemma_chat.store.db import ApiKey
from gemma_chat.errors import ValidationError

pytestmark = pytest.mark.both_engines


def test_a_key_signs_in_as_its_user_and_is_stored_only_hashed(settings, database):
    alice = auth.register_user(settings, "alice", "long enough pw")
    row, plaintext = keys.create_key(alice.id, "editor")
    assert plaintext.startswith("gck_") and len(plaintext) > 40
    assert keys.resolve_key(plaintext).id == alice.id
    stored = ApiKey.get_by_id(row.id)
    assert plaintext not in (stored.key_hash, stored.prefix, stored.label)
    assert stored.prefix == plaintext[:12] and stored.last_used_at is not None
    assert [k.label for k in keys.list_keys(alice.id)] == ["editor"]


@pytest.mark.parametrize("wrong", [None, "", "gck_", "gck_" + "x" * 43, "Bearer x", 12, "gck_" + "y" * 500])
def test_anything_but_a_live_key_resolves_to_nobody(settings, database, wrong):
    auth.register_user(settings, "alice", "long enough pw")
    assert keys.resolve_key(wrong) is None


def test_revoked_keys_and_disabled_users_stop_at_once(settings, database):
    alice = auth.register_user(settings, "alice", "long enough pw")
    bob = auth.register_user(settings, "bob", "long enough pw")
    first, first_key = keys.create_key(alice.id, "one")
    _, second_key = keys.create_key(alice.id, "two")
    with pytest.raises(ValidationError):
        keys.revoke_key(first.id, user_id=bob.id)  # not bob's key
    keys.revoke_key(first.id, user_id=alice.id)
    assert keys.resolve_key(first_key) is None
    assert keys.resolve_key(second_key).id == alice.id
    assert [k.label for k in keys.list_keys(alice.id)] == ["two"]
    admin.set_disabled(None, "alice", True)
    assert keys.resolve_key(second_key) is None
    admin.set_disabled(None, "alice", False)
    assert keys.resolve_key(second_key).id == alice.id


def test_a_label_is_short_plain_text(settings, database):
    alice = auth.register_user(settings, "alice", "long enough pw")
    for bad in ["x" * 65, "a\nb", 3]:
        with pytest.raises(ValidationError):
            keys.create_key(alice.id, bad)


def test_cli_creates_lists_and_revokes_keys(data_dir):
    def cli(*args, stdin=None):
        return subprocess.run(
            [sys.executable, str(ROOT / "main.py"), *args], input=stdin, capture_output=True, text=True,
            env=run_env(data_dir), timeout=120,
        )

    assert cli("users", "create", "alice", "--password-stdin", stdin="long enough pw\n").returncode == 0
    created = cli("keys", "create", "alice", "--label", "laptop")
    assert created.returncode == 0, created.stderr
    plaintext = created.stdout.strip()
    assert plaintext.startswith("gck_") and "shown only now" in created.stderr
    listed = cli("keys", "list", "alice")
    assert "laptop" in listed.stdout and plaintext[:12] in listed.stdout and plaintext not in listed.stdout
    assert "active" in listed.stdout
    revoked = cli("keys", "revoke", "1")
    assert revoked.returncode == 0 and "Revoked API key 1" in revoked.stdout
    assert "revoked" in cli("keys", "list", "alice").stdout
    assert cli("keys", "revoke", "99").returncode == 1
    assert cli("keys", "create", "nobody").returncode == 1
