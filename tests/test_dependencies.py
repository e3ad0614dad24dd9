"""Every package the code imports is one pyproject.toml installs: an undeclared import works only on
the machine where something else happened to bring it (fastapi through gradio, httpx2 through hub 2.x).

The app's modules are read against requirements.txt (pyproject's dependencies); tests and bench
against it plus requirements-dev.txt (the `dev` extra). One scan, like the store boundary test.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import ROOT

# The project's own packages, and the test modules pytest lets tests import by their bare names.
FIRST_PARTY = {"gemma_chat", "tests", "bench"} | {
    path.stem for path in (ROOT / "tests").rglob("*.py")} | {path.name for path in (ROOT / "tests").iterdir() if path.is_dir()}


def declared(*files: str) -> set[str]:
    names = set()
    for file in files:
        for line in (ROOT / file).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                names.add(normalize(re.match(r"[A-Za-z0-9._-]+", line).group()))
    return names


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one file (relative imports are first-party)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def undeclared_imports(files: list[Path], allowed: set[str]) -> dict[str, list[str]]:
    """{module: [files]} for third-party modules whose distribution is not in `allowed`."""
    distributions = metadata.packages_distributions()
    missing: dict[str, list[str]] = {}
    for path in files:
        for module in imported_modules(path):
            if module in sys.stdlib_module_names or module in FIRST_PARTY or module in ("tomli", "__future__"):
                continue  # tomli: Python 3.10's tomllib, declared with a marker for that version
            if not any(normalize(d) in allowed for d in distributions.get(module, [])):
                missing.setdefault(module, []).append(str(path.relative_to(ROOT)))
    return missing


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def test_the_app_imports_only_what_pyproject_installs():
    files = python_files("gemma_chat") + [ROOT / "main.py", ROOT / "scripts" / "download_models.py"]
    assert undeclared_imports(files, declared("requirements.txt")) == {}


def test_tests_and_bench_import_only_what_the_dev_extra_installs():
    files = python_files("tests", "bench")
    assert undeclared_imports(files, declared("requirements.txt", "requirements-dev.txt")) == {}


def test_the_scan_finds_an_undeclared_import(tmp_path):
    """numpy is installed here (pandas brings it), so only the declaration can tell."""
    pytest.importorskip("numpy")
    module = ROOT / "gemma_chat" / "_scan_probe_for_tests.py"
    module.write_text("import numpy\nfrom fastapi import FastAPI\nfrom .config import Settings\n", encoding="utf-8")
    try:
        missing = undeclared_imports([module], declared("requirements.txt"))
    finally:
        module.unlink()
    assert missing == {"numpy": ["gemma_chat/_scan_probe_for_tests.py"]}
