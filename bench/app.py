"""`python main.py --no-browser` as a subprocess: started, timed to its first HTTP 200, measured, stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from gemma_chat.config import environment_without_settings

from .common import ROOT, now


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_environment(data_dir: Path, tiers: dict[str, dict[str, str]], **extra: str) -> dict[str, str]:
    """The app's environment: no GEMMA_CHAT_* from the caller, this data dir, fast bcrypt, these tiers."""
    env = environment_without_settings()
    env.update(GEMMA_CHAT_DATA_DIR=str(data_dir), GEMMA_CHAT_BCRYPT_ROUNDS="4")
    for tier, values in tiers.items():
        for name, value in values.items():
            env[f"GEMMA_CHAT_{tier.upper()}_{name.upper()}"] = str(value)
    env.update(extra)
    return env


class AppProcess:
    """The app in a subprocess; stdout lines are kept with the time they arrived."""

    def __init__(self, data_dir: Path, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.data_dir = data_dir
        self.log_path = log_path
        self.lines: list[tuple[float, str]] = []
        self.started = now()
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--no-browser", "--port", str(self.port), "--data-dir", str(data_dir)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.up_at: float | None = None

    def _read(self) -> None:
        with self.log_path.open("w") as log:
            for line in self.process.stdout:
                self.lines.append((now(), line.rstrip("\n")))
                log.write(line)
                log.flush()

    def wait_until_up(self, timeout: float = 180, poll_s: float = 0.02) -> float:
        """Seconds from the process start to the first HTTP 200 on /."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        self.up_at = now()
                        return self.up_at - self.started
            except OSError:
                time.sleep(poll_s)
        raise RuntimeError(f"the app did not come up in {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def line_time(self, needle: str) -> float | None:
        """Seconds from the process start to the first stdout line containing `needle`."""
        for stamp, line in self.lines:
            if needle in line:
                return stamp - self.started
        return None

    def memory(self) -> dict:
        """The app process's memory now: RSS split into anonymous and file-backed (mapped model) pages."""
        import psutil

        process = psutil.Process(self.process.pid)
        info = process.memory_full_info()
        status = {}
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile", "RssShmem", "VmHWM"):
                    status[key] = int(value.split()[0]) * 1024
        except OSError:
            pass
        return {
            "rss_bytes": info.rss,
            "uss_bytes": getattr(info, "uss", None),
            "pss_bytes": getattr(info, "pss", None),
            "rss_anon_bytes": status.get("RssAnon"),
            "rss_file_bytes": status.get("RssFile"),
            "peak_rss_bytes": status.get("VmHWM"),
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)

    def __enter__(self) -> "AppProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
