"""The interaction log: one row per chat turn, from the moment credits are held to its outcome.

A turn is written as `pending` together with its hold, so a crash mid-answer leaves a row that
start-up recovery marks `interrupted`; it is finished in the same transaction as its capture or
release.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..store import interaction_queries
from ..store.db import Interaction, joined_transaction, transaction

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


SOURCES = ("ui", "api")


def start_interaction(
    request_id: str, user_id: int, tier: str, model_name: str, prompt: str, *,
    conversation_id: int | None = None, replaces_id: int | None = None, source: str = "ui",
) -> Interaction:
    return interaction_queries.insert_pending_interaction(
        request_id, user_id, tier, model_name, prompt,
        conversation_id=conversation_id, replaces_id=replaces_id, source=source,
    )


def finish_interaction(request_id: str, outcome: TurnOutcome) -> bool:
    """Record the outcome of a pending turn. Returns False when it was already finished."""
    with joined_transaction():
        # Each field by its name: a field the store does not write yet fails here, never silently.
        return interaction_queries.finish_pending_interaction(request_id, **vars(outcome))


def log_refused(
    request_id: str, user_id: int, tier: str, model_name: str, prompt: str, *,
    conversation_id: int | None = None, source: str = "ui", replaces_id: int | None = None,
) -> Interaction:
    """A turn refused before generation (not enough credits): logged, never charged. A refused
    replacement names the turn it would have replaced, and stays hidden in the chat."""
    return interaction_queries.insert_refused_interaction(
        request_id, user_id, tier, model_name, prompt, conversation_id=conversation_id, source=source,
        replaces_id=replaces_id,
    )


def mark_interrupted(request_ids: list[str]) -> int:
    """Turns whose process died mid-answer (their holds were released at start-up)."""
    if not request_ids:
        return 0
    with transaction():
        return interaction_queries.mark_pending_interrupted(request_ids)
