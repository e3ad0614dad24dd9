"""The interaction log: one row per chat turn, from the moment credits are held to its outcome.

A turn is written as `pending` together with its hold, so a crash mid-answer leaves a row that
start-up recovery marks `interrupted`; it is finished in the same transaction as its capture or
release.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .store.db import Interaction, database, joined_transaction, transaction, utcnow

STATUSES = ("pending", "ok", "stopped", "error", "refused", "interrupted")


@dataclass(frozen=True)
class TurnOutcome:
    status: str  # ok | stopped | error | interrupted
    answer: str = ""
    credits_charged: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: int | None = None
    duration_ms: int | None = None
    error_id: str | None = None


# Plain SQL for the two writes of every turn: building them with the ORM took longer than SQLite's
# own work (bench/ledger.py measures it). The outcome's fields are still named once, in TurnOutcome.
_FINISH_SQL = (
    "UPDATE interactions SET "
    + ", ".join(f"{field.name} = ?" for field in dataclasses.fields(TurnOutcome))
    + ", finished_at = ? WHERE request_id = ? AND status = 'pending'"
)


SOURCES = ("ui", "api")


def start_interaction(
    request_id: str, user_id: int, tier: str, model_name: str, prompt: str, *,
    conversation_id: int | None = None, replaces_id: int | None = None, source: str = "ui",
) -> Interaction:
    created_at = utcnow()
    cursor = database.execute_sql(
        "INSERT INTO interactions (request_id, user_id, tier, model_name, prompt, answer, status, credits_charged, "
        "created_at, conversation_id, replaces_id, source) VALUES (?, ?, ?, ?, ?, '', 'pending', 0, ?, ?, ?, ?) RETURNING id",
        (request_id, user_id, tier, model_name, prompt, str(created_at), conversation_id, replaces_id, source),
    )
    return Interaction(
        id=cursor.fetchone()[0], request_id=request_id, user=user_id, tier=tier, model_name=model_name, prompt=prompt,
        answer="", status="pending", credits_charged=0, created_at=created_at, conversation=conversation_id,
        replaces=replaces_id, source=source,
    )


def finish_interaction(request_id: str, outcome: TurnOutcome) -> bool:
    """Record the outcome of a pending turn. Returns False when it was already finished."""
    values = [getattr(outcome, field.name) for field in dataclasses.fields(TurnOutcome)]
    with joined_transaction():
        updated = database.execute_sql(_FINISH_SQL, (*values, str(utcnow()), request_id)).rowcount
    return updated == 1


def log_refused(
    request_id: str, user_id: int, tier: str, model_name: str, prompt: str, *,
    conversation_id: int | None = None, source: str = "ui",
) -> Interaction:
    """A turn refused before generation (not enough credits): logged, never charged."""
    now = utcnow()
    return Interaction.create(
        conversation=conversation_id,
        source=source,
        request_id=request_id,
        user=user_id,
        tier=tier,
        model_name=model_name,
        prompt=prompt,
        status="refused",
        created_at=now,
        finished_at=now,
    )


def mark_interrupted(request_ids: list[str]) -> int:
    """Turns whose process died mid-answer (their holds were released at start-up)."""
    if not request_ids:
        return 0
    with transaction():
        return (
            Interaction.update(status="interrupted", finished_at=utcnow())
            .where((Interaction.request_id.in_(request_ids)) & (Interaction.status == "pending"))
            .execute()
        )
