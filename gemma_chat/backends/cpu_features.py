"""Whether llama.cpp's extra CPU buffer types (AMX and friends) may be used on this machine.

On some Intel Xeons with AMX, llama-cpp-python 0.3.36 faults on the first token with them on, and
no cheap check predicts it (FIELD_NOTES): the first worker probes them in its own process, and the
answer is remembered in the data dir, keyed by llama-cpp-python version and CPU model and flags.
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

from ..config import Settings

RECORD_FILE = "cpu_extra_buffers.json"
_RECORD_LOCK = threading.Lock()


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
    return f"llama-cpp-python {version} | {model} | flags {flags_digest}"


def _records(settings: Settings) -> dict:
    try:
        return json.loads((settings.data_dir / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def decide_extra_buffers(settings: Settings) -> ExtraBuffers:
    if settings.cpu_extra_buffers == "on":
        return ExtraBuffers(True, False, "on (set in the settings)")
    if settings.cpu_extra_buffers == "off":
        return ExtraBuffers(False, False, "off (set in the settings)")
    record = _records(settings).get(machine_key())
    if record is None:
        return ExtraBuffers(True, True, "on — being checked on this CPU")
    if record["works"]:
        return ExtraBuffers(True, False, f"on — they work on this CPU (checked {record['checked_at']})")
    return ExtraBuffers(False, False, f"off — they crashed on this CPU (checked {record['checked_at']})")


def remember_extra_buffers(settings: Settings, works: bool, detail: str = "") -> ExtraBuffers:
    """Record the probe's outcome for this machine; written atomically, so two workers may race."""
    with _RECORD_LOCK:  # both tiers' supervisors learn at once; other processes race only the rename
        return _write_record(settings, works, detail)


def _write_record(settings: Settings, works: bool, detail: str) -> ExtraBuffers:
    records = _records(settings)
    records[machine_key()] = {
        "works": works,
        "checked_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "detail": detail,
    }
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    target = settings.data_dir / RECORD_FILE
    partial = target.with_name(f".{RECORD_FILE}.{uuid.uuid4().hex}.part")
    partial.write_text(json.dumps(records, indent=2), encoding="utf-8")
    os.replace(partial, target)
    return decide_extra_buffers(settings)
