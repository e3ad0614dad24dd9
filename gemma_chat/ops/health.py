"""Readiness as a load balancer asks it (/readyz): the database answers and at least one tier does."""

from __future__ import annotations

from ..store.db import database_answers


def check_readiness(engine) -> tuple[bool, dict]:
    """(ready, what was checked): each part named, so an operator sees which one is missing."""
    database = database_answers()
    tiers = {tier["tier"]: tier["ready"] for tier in engine.load_report()}
    checks = {
        "database": "ok" if database else "not answering",
        "tiers": {name: "ready" if ready else "not ready" for name, ready in tiers.items()},
    }
    return database and any(tiers.values()), checks
