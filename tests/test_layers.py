"""The layers of shared/LAYOUT.md hold: arrows point down only (web/ui/cli → services → backends/store).

Read from the source, like the store boundary test: every import of every module of gemma_chat/
(relative ones resolved, imports inside functions too), so an import that points up fails here with
its file and line. Known exceptions are listed below with the reason they exist today.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gemma_chat"
SERVICES = ("accounts", "billing", "chats", "inference", "ops")
FACES = ("ui", "web", "cli")

# (file, imported module) pairs that break a rule today, each with why; a fix removes its line here.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()
# What everything shares: these import only each other (LAYOUT.md: … → backends/store → config/errors).
BOTTOM = ("config.py", "errors.py", "numbers.py", "throttle.py", "wording.py")
BOTTOM_MODULES = tuple(name.removesuffix(".py") for name in BOTTOM)


def _module_parts(path: Path) -> list[str]:
    parts = ["gemma_chat", *path.relative_to(PACKAGE).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for each import; `from a import b` counts as a and as a.b (b may be a module)."""
    parts = _module_parts(path)
    package = parts if path.name == "__init__.py" else parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found += [(node.lineno, base)] + [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _within(module: str, *prefixes: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def _group(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def violations(path: Path) -> list[str]:
    where = path.relative_to(PACKAGE).as_posix()
    group = _group(path)
    found: dict[tuple[int, str], str] = {}  # one message per line and rule (`from ..ui import a, b`: once)
    for line, module in imports_of(path):
        if any(where == w and _within(module, m) for w, m in KNOWN_EXCEPTIONS):
            continue
        if group in SERVICES and _within(module, *(f"gemma_chat.{face}" for face in FACES)):
            found.setdefault((line, "up"), f"{where}:{line}: a service imports {module}")
        if group in ("backends", "store") and _within(module, *(f"gemma_chat.{g}" for g in SERVICES + FACES)):
            found.setdefault((line, "up"), f"{where}:{line}: {group}/ imports {module}")
        if where in BOTTOM and _within(module, "gemma_chat") and not _within(module, *(f"gemma_chat.{m}" for m in BOTTOM_MODULES)):
            found.setdefault((line, "up"), f"{where}:{line}: {where} is what everything shares and imports {module}")
        if _within(module, "llama_cpp") and where != "backends/llama_runner.py":
            found.setdefault((line, "llama_cpp"), f"{where}:{line}: imports {module} (only backends/llama_runner.py talks to llama.cpp)")
        if _within(module, "gradio") and group != "ui" and where != "web/app.py":
            found.setdefault((line, "gradio"), f"{where}:{line}: imports {module} (only ui/ and web/app.py use gradio)")
    return [found[key] for key in sorted(found)]


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_point_down(path):
    assert violations(path) == []


def test_the_groups_exist():
    """The scan reads real folders: a renamed group would make the rules above vacuous."""
    for group in (*SERVICES, "backends", "store", "ui", "web"):
        assert (PACKAGE / group / "__init__.py").is_file(), group


def test_the_known_exceptions_are_still_needed():
    """An exception nobody needs any more is taken off the list, so it cannot hide a new import."""
    for where, module in KNOWN_EXCEPTIONS:
        assert module in {m for _, m in imports_of(PACKAGE / where)}, (where, module)


def test_the_check_sees_each_kind_of_upward_import(tmp_path, monkeypatch):
    """Each rule fires on a sample (so a green run means something)."""
    package = tmp_path / "gemma_chat"
    samples = {
        "billing/sample.py": "from ..ui import common\nimport gemma_chat.web.app\n",
        "store/sample.py": "from ..billing import ledger\nfrom gemma_chat import cli\n",
        "backends/sample.py": "import llama_cpp\n",
        "ops/sample.py": "def later():\n    import gradio as gr\n",
        "config.py": "from .errors import ConfigError\ndef later():\n    from .store.dialect import redact_url\n",
    }
    for name, source in samples.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(source, encoding="utf-8")
    monkeypatch.setitem(globals(), "PACKAGE", package)
    found = {name: [v.split(":")[1] for v in violations(package / name)] for name in samples}
    assert found == {
        "billing/sample.py": ["1", "2"],
        "store/sample.py": ["1", "2"],
        "backends/sample.py": ["1"],
        "ops/sample.py": ["2"],
        "config.py": ["3"],
    }, found
