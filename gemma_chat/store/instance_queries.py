"""App instances in the database: their liveness locks (PostgreSQL) and which of them own active holds.

An instance's liveness lock is a session-level advisory lock on a connection of its own; the server
drops it when the process dies, however it dies (kill -9 included), so a free lock means a gone owner.
"""

from __future__ import annotations

import contextlib
import hashlib

from .db import database, dialect


class LivenessLock:
    """An instance's liveness lock, held until released or until its process ends.

    A server restart ends the session and the lock with it while the instance lives on: ensure_held()
    notices and takes it again.
    """

    def __init__(self, database_url: str, instance_id: str):
        self._url = database_url
        self._instance_id = instance_id
        self._connection = None
        self._take()

    def _take(self) -> None:
        import psycopg

        self._connection = psycopg.connect(self._url, autocommit=True, application_name=f"gemma-chat {self._instance_id}")
        self._connection.execute("SELECT pg_advisory_lock(%s)", (liveness_key(self._instance_id),))

    def ensure_held(self) -> bool:
        """True when the lock is still held; False when its session was gone and the lock has just
        been taken again. Raises the driver's error while the server cannot be reached."""
        import psycopg

        try:
            self._connection.execute("SELECT 1")
            return True
        except psycopg.Error:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
        self._take()
        return False

    def release(self) -> None:
        self._connection.close()  # the lock goes with the session


def liveness_key(instance_id: str) -> int:
    """The signed 64-bit advisory lock key of an instance."""
    return int.from_bytes(hashlib.sha256(f"gemma-chat instance {instance_id}".encode()).digest()[:8], "big", signed=True)


def take_liveness_lock(database_url: str, instance_id: str) -> LivenessLock:
    """Open a connection of the instance's own and take its liveness lock there."""
    return LivenessLock(database_url, instance_id)


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
