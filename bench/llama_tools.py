"""llama.cpp's own tools, built once from the llama.cpp the installed llama-cpp-python vendors.

The wheel does not build `llama-batched-bench`; its sdist holds all of llama.cpp (FIELD_NOTES,
"Batching and prompt caching"). We download that sdist (or reuse a copy in the cache), build the
tool with cmake, and keep the binary under ~/.cache/gemma-chat/llama-tools/<version>/. Building
takes minutes on 2 cores; every later run reuses it. `python -m bench.llama_tools` builds it alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("GEMMA_CHAT_TOOLS_CACHE", Path.home() / ".cache" / "gemma-chat"))
TOOLS = ("llama-batched-bench",)


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


def build_tools(say=print, jobs: int = 2) -> tuple[Path | None, str]:
    """(the directory holding the tools, "") once built; (None, why not) when building is impossible."""
    if all(tool_path(name) for name in TOOLS):
        return tools_dir(), ""
    if not shutil.which("cmake") or not (shutil.which("c++") or shutil.which("g++")):
        return None, "cmake and a C++ compiler are needed to build llama-batched-bench"
    version = llama_cpp_version()
    try:
        archive = _sdist(version, say)
        with tempfile.TemporaryDirectory(prefix="llama-tools-") as work:
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers() if re.match(r"[^/]+/vendor/llama\.cpp/", m.name)]
                tar.extractall(work, members=members, filter="data")
            source = next(Path(work).glob("*/vendor/llama.cpp"))
            build = Path(work) / "build"
            say(f"  building {', '.join(TOOLS)} from llama.cpp in llama-cpp-python {version} (minutes, once)")
            subprocess.run(
                ["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
                 "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                 "-DLLAMA_BUILD_SERVER=OFF", "-DBUILD_SHARED_LIBS=OFF"],
                check=True, capture_output=True, text=True,
            )
            subprocess.run(
                ["cmake", "--build", str(build), "--target", *TOOLS, "-j", str(jobs)],
                check=True, capture_output=True, text=True,
            )
            target = tools_dir()
            target.mkdir(parents=True, exist_ok=True)
            for name in TOOLS:
                shutil.copy2(next(build.rglob(name)), target / name)
    except (subprocess.CalledProcessError, OSError, StopIteration, tarfile.TarError) as exc:
        output = getattr(exc, "stderr", "") or getattr(exc, "stdout", "") or ""
        return None, f"building llama.cpp's tools failed: {exc} {output[-500:]}".strip()
    return tools_dir(), ""


if __name__ == "__main__":
    where, why = build_tools()
    print(where or why)
    sys.exit(0 if where else 1)
