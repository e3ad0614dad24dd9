"""App instances in the database: their liveness locks (PostgreSQL) and which of them own active holds.

An instance's liveness lock is a session-level advisory lock on a connection of its own; the server
drops it when the process dies, however it dies (kill -9 included), so a free lock means a gone owner.
"""

from __future__ import annotations

import hashlib

from .db import database, dialect


class LivenessLock:
    """An instance's liveness lock, held until released or until its process ends."""

    def __init__(self, connection):
        self._connection = connection

    def release(self) -> None:
        self._connection.close()  # the lock goes with the session


def liveness_key(instance_id: str) -> int:
    """The signed 64-bit advisory lock key of an instance."""
    return int.from_bytes(hashlib.sha256(f"gemma-chat instance {instance_id}".encode()).digest()[:8], "big", signed=True)


def take_liveness_lock(database_url: str, instance_id: str) -> LivenessLock:
    """Open a connection of the instance's own and take its liveness lock there."""
    import psycopg

    connection = psycopg.connect(database_url, autocommit=True, application_name=f"gemma-chat {instance_id}")
    connection.execute("SELECT pg_advisory_lock(%s)", (liveness_key(instance_id),))
    return LivenessLock(connection)


def instance_is_gone(instance_id: str) -> bool:
    """Whether no process holds the instance's liveness lock (PostgreSQL, inside a transaction).

    A transaction-level try-lock is taken only when the owner's session lock is gone, and is
    released at commit.
    """
    return database.execute_sql("SELECT pg_try_advisory_xact_lock(?)", (liveness_key(instance_id),)).fetchone()[0]


def list_hold_owners() -> list[str]:
    """The instances that stamped at least one active hold."""
    return [row[0] for row in database.execute_sql(
        "SELECT DISTINCT instance_id FROM holds WHERE status = 'active' AND instance_id IS NOT NULL"
    )]


def other_instances_may_serve() -> bool:
    """Whether other app instances can serve this database at the same time (PostgreSQL); on SQLite
    one app runs per data dir (serve.py's file lock)."""
    return dialect().name != "sqlite"
