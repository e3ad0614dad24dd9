"""Which app process owns a hold: every running instance has an id and, on PostgreSQL, a liveness lock.

Several instances can serve one PostgreSQL database. Each stamps its holds with its id and holds a
session-level advisory lock named after it on a connection of its own for as long as it runs; the
server drops that lock when the process dies, however it dies (kill -9 included). An instance can
then tell a dead owner from a live one and releases only the holds of instances that are gone.
On SQLite one app runs per data dir (serve.py's file lock): every hold at start-up is orphaned.
"""

from __future__ import annotations

import uuid

from ..store import instance_queries

_current_id: str | None = None
_liveness_lock: instance_queries.LivenessLock | None = None


def current_instance_id() -> str | None:
    """This process's id when it serves the app (None in the CLI and the tests' own processes)."""
    return _current_id


def start_instance(database_url: str = "") -> str:
    """Give this process an instance id; on PostgreSQL take its liveness lock (kept until exit)."""
    global _current_id, _liveness_lock
    instance_id = uuid.uuid4().hex
    if database_url:
        _liveness_lock = instance_queries.take_liveness_lock(database_url, instance_id)
    _current_id = instance_id
    return instance_id


def stop_instance() -> None:
    global _current_id, _liveness_lock
    if _liveness_lock is not None:
        _liveness_lock.release()
        _liveness_lock = None
    _current_id = None


def keep_liveness_lock() -> bool:
    """Whether this instance's liveness lock was held all along (always, on SQLite). False right after
    a server restart, which ended every instance's lock: this one's is taken again at once, and
    until the others have had time to do the same, none of them must be taken for gone."""
    return _liveness_lock is None or _liveness_lock.ensure_held()


def gone_instances(instance_ids) -> list[str]:
    """Those of these instances no process holds the liveness lock of (PostgreSQL, inside a transaction);
    this instance is never gone."""
    return [
        instance_id for instance_id in instance_ids
        if instance_id != _current_id and instance_queries.instance_is_gone(instance_id)
    ]
