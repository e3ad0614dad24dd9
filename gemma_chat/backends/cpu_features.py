"""Whether llama.cpp's extra CPU buffer types (AMX and friends) may be used on this machine.

On some Intel Xeons with AMX, llama-cpp-python 0.3.36 faults on the first token with them on, and
no cheap check predicts it (FIELD_NOTES): the first worker probes them in its own process, and the
answer is remembered, keyed by llama-cpp-python version and CPU model and flags, in the user's cache
folder (so a machine pays the probe's crash once, whatever the data dir) and in the data dir.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import threading
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..config import CACHE_DIR_ENV, SIMULATE_AMX_CRASH_ENV, Settings

RECORD_FILE = "cpu_extra_buffers.json"
_RECORD_LOCK = threading.Lock()


def simulating_amx_crash() -> bool:
    return os.environ.get(SIMULATE_AMX_CRASH_ENV, "") not in ("", "0")


@dataclass(frozen=True)
class ExtraBuffers:
    enabled: bool
    probe: bool  # not known on this machine yet: the worker checks them before it reports ready
    reason: str  # for the start-up plan and `python main.py models`

    @property
    def summary(self) -> str:
        return f"CPU extra buffers: {self.reason}"


def machine_key() -> str:
    """llama-cpp-python's version and the CPU's model and feature flags: what decides the crash."""
    try:
        version = metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        version = "unknown"
    model, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and not model:
                model = value
            elif key in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:  # not Linux: the processor name is what we have
        pass
    model = model or platform.processor() or platform.machine()
    flags_digest = hashlib.sha256(flags.encode()).hexdigest()[:16]
    # A simulated crash is another machine: its answer must never stand for the real CPU's.
    simulated = " | simulated AMX crash" if simulating_amx_crash() else ""
    return f"llama-cpp-python {version} | {model} | flags {flags_digest}{simulated}"


def machine_cache_dir() -> Path:
    configured = os.environ.get(CACHE_DIR_ENV, "")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("gemma-chat", appauthor=False))


def _read_records(folder: Path) -> dict:
    try:
        return json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _record_for_this_machine(settings: Settings) -> dict | None:
    """The data dir's record first (it may have been written by hand), then the machine's cache."""
    key = machine_key()
    for folder in (settings.data_dir, machine_cache_dir()):
        record = _read_records(folder).get(key)
        if record is not None:
            return record
    return None


def decide_extra_buffers(settings: Settings) -> ExtraBuffers:
    if settings.cpu_extra_buffers == "on":
        return ExtraBuffers(True, False, "on (set in the settings)")
    if settings.cpu_extra_buffers == "off":
        return ExtraBuffers(False, False, "off (set in the settings)")
    record = _record_for_this_machine(settings)
    if record is None:
        return ExtraBuffers(True, True, "on — being checked on this CPU")
    if record["works"]:
        return ExtraBuffers(True, False, f"on — they work on this CPU (checked {record['checked_at']})")
    return ExtraBuffers(False, False, f"off — they crashed on this CPU (checked {record['checked_at']})")


def remember_extra_buffers(settings: Settings, works: bool, detail: str = "") -> ExtraBuffers:
    """Record the probe's outcome for this machine in the data dir and in the machine's cache."""
    record = {
        "works": works,
        "checked_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "detail": detail,
    }
    with _RECORD_LOCK:  # both tiers' supervisors learn at once; other processes race only the rename
        _write_record(settings.data_dir, record)
        try:
            _write_record(machine_cache_dir(), record)
        except OSError:  # a read-only home: the data dir's record still spares this data dir the crash
            pass
    return decide_extra_buffers(settings)


def _write_record(folder: Path, record: dict) -> None:
    """Atomically, so two processes learning at once never leave a torn file."""
    records = _read_records(folder)
    records[machine_key()] = record
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / RECORD_FILE
    partial = target.with_name(f".{RECORD_FILE}.{uuid.uuid4().hex}.part")
    partial.write_text(json.dumps(records, indent=2), encoding="utf-8")
    os.replace(partial, target)
