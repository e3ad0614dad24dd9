"""`verify`: is the database healthy? SQLite's own checks, the ledger invariant, stale holds."""

from __future__ import annotations

from ..config import Settings
from ..store.db import check_integrity
from ..billing.ledger import verify_ledger


def verify_database(settings: Settings) -> list[str]:
    """Every problem found, one line each; empty when healthy."""
    return check_integrity() + verify_ledger(stale_after_s=settings.stale_hold_s)
