"""Which app process owns a hold: every running instance has an id and, on PostgreSQL, a liveness lock.

Several instances can serve one PostgreSQL database. Each stamps its holds with its id and holds a
session-level advisory lock named after it on a connection of its own for as long as it runs; the
server drops that lock when the process dies, however it dies (kill -9 included). An instance can
then tell a dead owner from a live one and releases only the holds of instances that are gone.
On SQLite one app runs per data dir (serve.py's file lock): every hold at start-up is orphaned.
"""

from __future__ import annotations

import hashlib
import uuid

from .store.db import database

_current_id: str | None = None
_liveness_connection = None  # the psycopg connection that holds this instance's lock


def current_instance_id() -> str | None:
    """This process's id when it serves the app (None in the CLI and the tests' own processes)."""
    return _current_id


def liveness_key(instance_id: str) -> int:
    """The signed 64-bit advisory lock key of an instance."""
    return int.from_bytes(hashlib.sha256(f"gemma-chat instance {instance_id}".encode()).digest()[:8], "big", signed=True)


def start_instance(database_url: str = "") -> str:
    """Give this process an instance id; on PostgreSQL take its liveness lock (kept until exit)."""
    global _current_id, _liveness_connection
    instance_id = uuid.uuid4().hex
    if database_url:
        import psycopg

        connection = psycopg.connect(database_url, autocommit=True, application_name=f"gemma-chat {instance_id}")
        connection.execute("SELECT pg_advisory_lock(%s)", (liveness_key(instance_id),))
        _liveness_connection = connection
    _current_id = instance_id
    return instance_id


def stop_instance() -> None:
    global _current_id, _liveness_connection
    if _liveness_connection is not None:
        _liveness_connection.close()  # the lock goes with the session
        _liveness_connection = None
    _current_id = None


def gone_instances(instance_ids) -> list[str]:
    """Those of these instances no process holds the liveness lock of (PostgreSQL, inside a transaction).

    A transaction-level try-lock is taken only when the owner's session lock is gone, and is
    released at commit; this instance is never gone.
    """
    return [
        instance_id for instance_id in instance_ids
        if instance_id != _current_id
        and database.execute_sql("SELECT pg_try_advisory_xact_lock(?)", (liveness_key(instance_id),)).fetchone()[0]
    ]
