"""llama.cpp's own tools, built once from the llama.cpp the installed llama-cpp-python vendors.

The wheel builds neither `llama-batched-bench` nor `llama-server`; its sdist holds all of llama.cpp
(FIELD_NOTES, "Batching and prompt caching"). We download that sdist (or reuse a copy in the cache),
build the tools that are missing with cmake, and keep the binaries under
~/.cache/gemma-chat/llama-tools/<version>/. Building takes minutes on 2 cores (llama-server the
most); every later run reuses them. `python -m bench.llama_tools [NAME…]` builds them alone.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("GEMMA_CHAT_TOOLS_CACHE", Path.home() / ".cache" / "gemma-chat"))
TOOLS = ("llama-batched-bench", "llama-server")


def llama_cpp_version() -> str:
    from importlib.metadata import version

    return version("llama_cpp_python")


def tools_dir() -> Path:
    return CACHE / "llama-tools" / llama_cpp_version()


def tool_path(name: str) -> Path | None:
    path = tools_dir() / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _sdist(version: str, say) -> Path:
    cached = CACHE / "src" / f"llama_cpp_python-{version}.tar.gz"
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    say(f"  downloading the llama-cpp-python {version} sdist")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps", "--no-binary", ":all:",
         "--no-build-isolation", "-d", str(cached.parent)],
        check=True, capture_output=True, text=True,
    )
    return cached


def build_tools(say=print, jobs: int = 2, names: tuple[str, ...] = TOOLS) -> tuple[Path | None, str]:
    """(the directory holding the named tools, "") once built; (None, why not) when building is impossible.

    Only the missing ones are built, so a cached llama-batched-bench is not rebuilt for llama-server.
    """
    missing = [name for name in names if not tool_path(name)]
    if not missing:
        return tools_dir(), ""
    if not shutil.which("cmake") or not (shutil.which("c++") or shutil.which("g++")):
        return None, f"cmake and a C++ compiler are needed to build {', '.join(missing)}"
    tools_dir().mkdir(parents=True, exist_ok=True)
    with open(tools_dir() / ".build.lock", "w") as lock:
        try:  # another bench run is building: do not build twice on 2 cores, nor wait minutes for it
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None, f"another process is building {', '.join(missing)} now; skipped in this run"
        return _build(missing, say, jobs)


def _build(missing: list[str], say, jobs: int) -> tuple[Path | None, str]:
    version = llama_cpp_version()
    try:
        archive = _sdist(version, say)
        with tempfile.TemporaryDirectory(prefix="llama-tools-") as work:
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers() if re.match(r"[^/]+/vendor/llama\.cpp/", m.name)]
                tar.extractall(work, members=members, filter="data")
            source = next(Path(work).glob("*/vendor/llama.cpp"))
            build = Path(work) / "build"
            say(f"  building {', '.join(missing)} from llama.cpp in llama-cpp-python {version} (minutes, once)")
            subprocess.run(
                ["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
                 "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                 # llama-server embeds a web UI: neither npm nor a download from Hugging Face, an empty one
                 f"-DLLAMA_BUILD_SERVER={'ON' if 'llama-server' in missing else 'OFF'}", "-DLLAMA_BUILD_UI=OFF",
                 "-DLLAMA_USE_PREBUILT_UI=OFF", "-DBUILD_SHARED_LIBS=OFF"],
                check=True, capture_output=True, text=True,
            )
            subprocess.run(
                ["cmake", "--build", str(build), "--target", *missing, "-j", str(jobs)],
                check=True, capture_output=True, text=True,
            )
            target = tools_dir()
            target.mkdir(parents=True, exist_ok=True)
            for name in missing:
                shutil.copy2(next(build.rglob(name)), target / name)
    except (subprocess.CalledProcessError, OSError, StopIteration, tarfile.TarError) as exc:
        output = getattr(exc, "stderr", "") or getattr(exc, "stdout", "") or ""
        return None, f"building llama.cpp's tools failed: {exc} {output[-500:]}".strip()
    return tools_dir(), ""


if __name__ == "__main__":
    where, why = build_tools(names=tuple(sys.argv[1:]) or TOOLS)
    print(where or why)
    sys.exit(0 if where else 1)
