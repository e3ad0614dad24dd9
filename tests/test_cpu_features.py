"""The remembered verdict on llama.cpp's CPU extra buffers: learnt once per machine, kept per data dir too."""

from __future__ import annotations

import json
import threading

import pytest

from gemma_chat.backends.cpu_features import RECORD_FILE, decide_extra_buffers, machine_key, remember_extra_buffers
from gemma_chat.config import CACHE_DIR_ENV, SIMULATE_AMX_CRASH_ENV, load_settings


@pytest.fixture(autouse=True)
def machine_cache(tmp_path, monkeypatch):
    """What these tests record must not become what the rest of the suite believes of this CPU."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "machine-cache"))
    return tmp_path / "machine-cache"


def test_two_tiers_remembering_at_once_never_fail_and_agree(settings):
    """Both workers finish their first load together: each writes the record (it once lost a rename)."""
    errors: list[BaseException] = []

    def remember(works: bool):
        try:
            for _ in range(100):
                remember_extra_buffers(settings, works, detail="")
        except BaseException as exc:  # noqa: BLE001 — the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=remember, args=(True,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert decide_extra_buffers(settings).reason.startswith("on — they work on this CPU")
    assert [p.name for p in settings.data_dir.iterdir()] == ["cpu_extra_buffers.json"]  # no partial file left


def test_the_setting_overrides_what_was_learnt(settings):
    import dataclasses

    remember_extra_buffers(settings, False, detail="SIGSEGV")
    assert decide_extra_buffers(settings).enabled is False
    assert decide_extra_buffers(dataclasses.replace(settings, cpu_extra_buffers="on")).enabled is True


def test_what_one_data_dir_learnt_holds_for_every_data_dir_on_the_machine(tmp_path):
    first, second = (load_settings(data_dir=tmp_path / name, env={}) for name in ("first", "second"))
    assert decide_extra_buffers(second).probe is True  # nothing known yet: the first worker checks
    remember_extra_buffers(first, False, detail="SIGSEGV (signal 11)")
    learnt = decide_extra_buffers(second)
    assert (learnt.enabled, learnt.probe) == (False, False)
    assert learnt.reason.startswith("off — they crashed on this CPU (checked ")


def test_a_data_dir_s_own_record_is_still_honoured_before_the_machine_s(tmp_path, machine_cache):
    settings = load_settings(data_dir=tmp_path / "data", env={})
    remember_extra_buffers(settings, True, detail="")
    (machine_cache / RECORD_FILE).write_text(
        json.dumps({machine_key(): {"works": False, "checked_at": "2026-12-01 10:00 UTC", "detail": "SIGSEGV"}})
    )
    assert decide_extra_buffers(settings).enabled is True  # the data dir's answer
    other = load_settings(data_dir=tmp_path / "other", env={})
    assert decide_extra_buffers(other).enabled is False  # a data dir without one: the machine's


def test_a_simulated_crash_never_stands_for_the_real_cpu(tmp_path, monkeypatch):
    settings = load_settings(data_dir=tmp_path / "data", env={})
    monkeypatch.setenv(SIMULATE_AMX_CRASH_ENV, "1")
    remember_extra_buffers(settings, False, detail="SIGSEGV (signal 11)")
    assert decide_extra_buffers(settings).enabled is False
    monkeypatch.delenv(SIMULATE_AMX_CRASH_ENV)  # the real CPU: still unknown, so still checked
    assert decide_extra_buffers(settings).probe is True
