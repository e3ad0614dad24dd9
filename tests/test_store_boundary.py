"""The storage boundary holds: only gemma_chat/store/ talks to the database.

Services call the store's named functions; they hold no SQL text, build no Peewee queries and use
no connection. Read from the source (one case per module), so a query slipped into a service fails
here with its line, whichever engine the tests run on.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from gemma_chat.store import db

PACKAGE = Path(__file__).resolve().parent.parent / "gemma_chat"
SERVICES = sorted(path for path in PACKAGE.rglob("*.py") if "store" not in path.relative_to(PACKAGE).parts)

SQL_TEXT = re.compile(
    r"^\s*((SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|DROP|ALTER|PRAGMA|SET|LOCK|VACUUM|ANALYZE)\s+\S|(BEGIN|COMMIT|ROLLBACK)\b)"
)
MODELS = {name for name, value in vars(db).items() if isinstance(value, type) and issubclass(value, db.BaseModel)}
QUERY_METHODS = {"select", "insert", "insert_many", "replace", "update", "delete", "create", "get", "get_or_none",
                 "get_by_id", "bulk_create", "bulk_update", "raw", "get_or_create"}
CONNECTION_METHODS = {"execute_sql", "execute_many", "atomic", "cursor", "save", "delete_instance"}
# What a service may take from store.db: units of work, the clock, lifecycle, what an engine error
# means (busy, full, gone), and the rows' types.
ALLOWED_FROM_DB = {"transaction", "joined_transaction", "read_snapshot", "utcnow", "open_database", "close_database",
                   "check_integrity", "is_busy_error", "retryable_error", "applied_migrations", "database_answers"} | MODELS


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_TEXT.match(node.value):
            found.append(f"{node.lineno}: SQL text {node.value[:40]!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, owner = node.func.attr, node.func.value
            if method in CONNECTION_METHODS:
                found.append(f"{node.lineno}: .{method}() talks to the database")
            elif method in QUERY_METHODS and isinstance(owner, ast.Name) and owner.id in MODELS:
                found.append(f"{node.lineno}: {owner.id}.{method}() builds a query")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").endswith("store.db"):
            found += [f"{node.lineno}: imports {alias.name} from store.db" for alias in node.names
                      if alias.name not in ALLOWED_FROM_DB]
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: imports {alias.name}" for alias in node.names
                      if alias.name.split(".")[0] in {"sqlite3", "psycopg", "peewee", "playhouse"}]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in {"sqlite3", "psycopg", "peewee", "playhouse"}:
            found.append(f"{node.lineno}: imports from {node.module}")
    return sorted(found, key=lambda line: int(line.split(":")[0]))


@pytest.mark.parametrize("path", SERVICES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_services_call_the_store_and_write_no_sql(path):
    assert _violations(path) == []


def test_the_check_sees_sql_and_queries(tmp_path):
    """The scan above finds each kind of database access it forbids (so a green run means something)."""
    sample = tmp_path / "service.py"
    sample.write_text(
        "import sqlite3\n"
        "from gemma_chat.store.db import User, database\n"
        "database.execute_sql('SELECT 1')\n"
        "User.select().where(User.id == 1)\n"
        "user.save()\n",
        encoding="utf-8",
    )
    found = _violations(sample)
    assert [line.split(":")[0] for line in found] == ["1", "2", "3", "3", "4", "5"], found
