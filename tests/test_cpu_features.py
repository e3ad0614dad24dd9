"""The remembered verdict on llama.cpp's CPU extra buffers: both tiers' supervisors learn it at once."""

from __future__ import annotations

import threading

from gemma_chat.backends.cpu_features import decide_extra_buffers, remember_extra_buffers


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
