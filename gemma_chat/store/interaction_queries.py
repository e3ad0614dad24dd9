"""The interactions table's writes: a turn's pending row, its outcome, refused and interrupted turns.

The two writes of every turn are plain SQL: building them with the ORM took longer than SQLite's own
work (bench/ledger.py measures it).
"""

from __future__ import annotations

from .db import Interaction, database, utcnow

_FINISH_SQL = (
    "UPDATE interactions SET status = ?, answer = ?, credits_charged = ?, prompt_tokens = ?, completion_tokens = ?, "
    "ttft_ms = ?, duration_ms = ?, error_id = ?, finished_at = ? WHERE request_id = ? AND status = 'pending'"
)


def insert_pending_interaction(
    request_id: str, user_id: int, tier: str, model_name: str, prompt: str, *,
    conversation_id: int | None, replaces_id: int | None, source: str,
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


def finish_pending_interaction(
    request_id: str, *, status: str, answer: str, credits_charged: int, prompt_tokens: int | None,
    completion_tokens: int | None, ttft_ms: int | None, duration_ms: int | None, error_id: str | None,
) -> bool:
    """Write the outcome of a turn still pending; False when it was already finished."""
    return database.execute_sql(
        _FINISH_SQL,
        (status, answer, credits_charged, prompt_tokens, completion_tokens, ttft_ms, duration_ms, error_id,
         str(utcnow()), request_id),
    ).rowcount == 1


def insert_refused_interaction(
    request_id: str, user_id: int, tier: str, model_name: str, prompt: str, *,
    conversation_id: int | None, source: str, replaces_id: int | None = None,
) -> Interaction:
    now = utcnow()
    return Interaction.create(
        conversation=conversation_id,
        replaces=replaces_id,
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


def mark_pending_interrupted(request_ids: list[str]) -> int:
    """Those of these turns still pending become interrupted; returns how many."""
    return (
        Interaction.update(status="interrupted", finished_at=utcnow())
        .where((Interaction.request_id.in_(request_ids)) & (Interaction.status == "pending"))
        .execute()
    )
