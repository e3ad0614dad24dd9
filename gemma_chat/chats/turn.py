"""One chat turn, end to end: check → hold → stream → capture or release → log.

Used by the UI and by the tests alike. `run_turn` is a generator of TurnUpdate; its last update
always carries the final status. Whatever ends the stream — success, a model error, the Stop
button, a closed tab (GeneratorExit) — the `finally` settles the hold exactly once:
an answer with text shown is charged, one without is released.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

from ..billing import ledger
from ..ops import metrics
from . import conversations, interactions
from ..accounts.auth import get_user
from ..backends.base import Sampling
from ..config import Settings
from ..store.db import transaction
from ..ops.error_log import log_error, logger
from ..errors import (
    DatabaseDisconnectedError,
    DatabaseFullError,
    DatabaseRetryableError,
    GemmaChatError,
    InsufficientCreditsError,
    ModelError,
    QueueFullError,
    UnknownUserError,
    ValidationError,
)
from .interactions import TurnOutcome
from ..wording import Message

FINAL_STATUSES = ("ok", "stopped", "refused", "rejected", "busy", "error")


@dataclass(frozen=True)
class TurnUpdate:
    status: str  # waiting | streaming, then one of FINAL_STATUSES
    answer: str = ""  # the answer so far
    model_label: str = ""
    price: int = 0
    credits_charged: int = 0
    queue_position: int | None = None
    restarting: bool = False  # waiting while the model (re)starts, e.g. after a crash
    message: str = ""  # what to tell the user when it is not a plain answer: a Message, English as str
    request_id: str | None = None
    conversation_id: int | None = None  # the chat this turn belongs to (new when the turn started one)
    # the finished turn's figures, for the answer's footer and the /v1 API (None while streaming or when unknown)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    duration_ms: int | None = None
    finish_reason: str | None = None  # the engine's: stop | length | stopped

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


def validate_message(text, max_chars: int) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("Type a message first.")
    if "\x00" in text:
        raise ValidationError("The message contains a NUL character; remove it and send again.")
    if len(text) > max_chars:
        raise ValidationError(
            "The message is {length:,} characters long; the limit is {limit:,}.", length=len(text), limit=max_chars
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in the request's JSON): not text SQLite can store
        raise ValidationError("The message contains an invalid character; remove it and send again.") from None
    return text.strip()


def tier_status(engine, tier: str):
    for status in engine.tiers():
        if status.tier == tier:
            return status
    raise ValidationError("Unknown model {tier!r}.", tier=tier)


def build_messages(history: Sequence[tuple[str, str]], message: str, system_prompt: str = "") -> list[dict]:
    """Earlier (user, assistant) turns of this chat, then the new message: what the engine trims.

    A chat's system prompt is folded into the new message, as /v1 folds system text into the next
    user turn (the models take user/assistant turns only); the engine trims the oldest turns first,
    so the prompt is never the part cut.
    """
    messages = []
    for user_text, answer in history:
        if user_text and answer:  # a turn without an answer would break the user/assistant alternation
            messages += [{"role": "user", "content": user_text}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": f"{system_prompt}\n\n{message}" if system_prompt else message})
    return messages


def run_turn(
    settings: Settings,
    engine,
    user_id: int,
    tier: str,
    message,
    history: Sequence[tuple[str, str]] = (),
    *,
    stop: threading.Event | None = None,
    conversation_id: int | None = None,
    new_conversation: bool = False,
    replaces_id: int | None = None,
    source: str = "ui",
    sampling: Sampling | None = None,
    system_prompt: str = "",
) -> Iterator[TurnUpdate]:
    """Answer `message` with `tier`'s model for `user_id`, billing exactly once.

    The turn joins the user's chat `conversation_id`, or starts a chat titled after the message
    when `new_conversation` (created with the hold, so a refused turn leaves no empty chat);
    `replaces_id` names the turn it regenerates or edits. `source` says where the turn came from
    ("ui" or "api"), for History and the reports. `sampling` overrides the tier's temperature /
    top_p for this turn (the API's); None keeps the tier's settings (the chat window).
    `system_prompt` is the chat's (build_messages).

    A refused message is kept: it joins the chat (a new chat is started for it) as a refused turn
    the user can send again; a refused replacement names the turn it would have replaced.
    """
    try:
        user = get_user(user_id)
        if user.is_disabled:
            raise ValidationError("This account is disabled.")
        prompt = validate_message(message, settings.max_message_chars)
        tier_settings = settings.tier(tier)
        status = tier_status(engine, tier)
        if conversation_id is not None:
            conversations.get_conversation(user_id, conversation_id)
        elif replaces_id is not None:
            raise ValidationError("Only the last message of a chat can be regenerated or edited.")
    except UnknownUserError:
        yield TurnUpdate("rejected", message=Message("Your session has ended; please log in again."))
        return
    except GemmaChatError as exc:
        yield TurnUpdate("rejected", message=exc.message)
        return

    base = TurnUpdate("waiting", model_label=status.label, price=tier_settings.price)
    if not status.available:
        metrics.record_turn(tier, "unavailable")
        yield replace(
            base, status="rejected",
            message=Message("{label} is not available: {reason}", label=status.label, reason=status.reason),
        )
        return

    request_id = ledger.new_request_id()
    base = replace(base, request_id=request_id)
    try:
        chat_id = conversation_id  # set only once the transaction commits: a refusal rolls a new chat back
        with transaction():
            if replaces_id is not None:  # checked in the write transaction: two replacements cannot both pass
                conversations.check_replaceable(user_id, chat_id, replaces_id)
            ledger.hold_credits(user_id, tier_settings.price, request_id)
            chat_id = _chat_for_turn(user_id, chat_id, new_conversation, prompt)
            interactions.start_interaction(
                request_id, user_id, tier, status.label, prompt, conversation_id=chat_id, replaces_id=replaces_id,
                source=source,
            )
        base = replace(base, conversation_id=chat_id)
    except InsufficientCreditsError as exc:
        chat_id = conversation_id  # the hold's transaction rolled back, a new chat with it
        with transaction():
            chat_id = _chat_for_turn(user_id, chat_id, new_conversation, prompt)
            interactions.log_refused(
                request_id, user_id, tier, status.label, prompt, conversation_id=chat_id, source=source,
                replaces_id=replaces_id,
            )
        metrics.record_turn(tier, "refused")
        yield replace(
            base,
            conversation_id=chat_id,
            status="refused",
            message=Message(
                "Not enough credits: {label} costs {price} {price:credit|credits} per answer and you have {available}. "
                "Add credits on the Top up tab.",
                label=status.label, price=tier_settings.price, available=exc.available,
            ),
        )
        return
    except DatabaseRetryableError as exc:  # busy, disk full, server gone: nothing held, nothing written
        yield replace(base, status="busy", message=exc.message)
        return
    except ValidationError as exc:  # the turn to replace is no longer the chat's last, or still running
        yield replace(base, status="rejected", message=exc.message)
        return

    messages = build_messages(history, prompt, system_prompt)
    yield from _stream_and_settle(engine, base, user_id, tier, messages, stop, sampling)


def _stream_and_settle(
    engine, base: TurnUpdate, user_id: int, tier: str, messages, stop, sampling: Sampling | None
) -> Iterator[TurnUpdate]:
    request_id = base.request_id
    answer = ""
    result = None
    started = time.monotonic()
    first_token_at = None
    outcome: TurnOutcome | None = None
    final: TurnUpdate | None = None
    try:
        yield base  # held: the UI can show the turn at once, before the prompt is evaluated
        for item in engine.generate(tier, messages, stop=stop, sampling=sampling):
            if isinstance(item, str):
                if first_token_at is None:
                    first_token_at = time.monotonic()
                answer += item
                yield replace(base, status="streaming", answer=answer)
            elif hasattr(item, "position"):
                yield replace(base, status="waiting", queue_position=item.position, restarting=item.restarting)
            else:
                result = item
        status = "stopped" if result is not None and result.finish_reason == "stopped" else "ok"
        outcome = TurnOutcome(
            status=status,
            answer=answer,
            prompt_tokens=getattr(result, "prompt_tokens", None),
            completion_tokens=getattr(result, "completion_tokens", None),
            ttft_ms=getattr(result, "ttft_ms", None),
            duration_ms=getattr(result, "duration_ms", None),
        )
    except QueueFullError as exc:
        outcome = TurnOutcome(status="refused")
        final = replace(base, status="busy", message=exc.message)
    except Exception as exc:  # noqa: BLE001 — any failure: release, log, tell the user the id
        error_id = log_error(f"chat:{tier}", exc, user_id=user_id, request_id=request_id, detail=getattr(exc, "detail", ""))
        outcome = TurnOutcome(status="error", answer=answer, error_id=error_id)
        reason = exc.message if isinstance(exc, ModelError) else Message("The model failed to answer.")
        final = replace(
            base, status="error", answer=answer,
            message=Message("{reason} Nothing was charged. (error {error_id})", reason=reason, error_id=error_id),
        )
    finally:
        if outcome is None:  # GeneratorExit: the tab closed or the UI's Stop cancelled us
            outcome = TurnOutcome(status="stopped", answer=answer)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        if outcome.duration_ms is None:
            ttft = int((first_token_at - started) * 1000) if first_token_at else None
            outcome = replace(outcome, duration_ms=elapsed_ms, ttft_ms=ttft)
        charged = _settle(request_id, user_id, outcome)
        unrecorded = isinstance(charged, DatabaseRetryableError)  # released later, never charged
        credits = 0 if unrecorded else charged
        shown = "busy" if final is not None and final.status == "busy" else "error" if unrecorded else outcome.status
        metrics.record_turn(
            tier, shown, charged=credits,
            completion_tokens=outcome.completion_tokens, ttft_ms=outcome.ttft_ms, duration_ms=outcome.duration_ms,
        )
        logger.info(
            "turn %s on %s for user %s: %s, %s credits", request_id, tier, user_id, shown, credits,
            extra={"event": "turn", "request_id": request_id, "user_id": user_id, "tier": tier, "outcome": shown,
                   "credits": credits},
        )
    if final is None and unrecorded:
        final = replace(base, status="error", answer=answer, message=not_recorded_message(charged))
    if final is None:
        final = replace(
            base, status=outcome.status, answer=answer, credits_charged=charged, prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens, duration_ms=outcome.duration_ms,
            finish_reason=getattr(result, "finish_reason", None),
        )
        if outcome.status == "stopped":
            final = replace(final, message=Message("Stopped." if charged else "Stopped. Nothing was charged."))
        elif not answer:
            final = replace(final, message=EMPTY_ANSWER_MESSAGE)
    yield final


EMPTY_ANSWER_MESSAGE = Message("The model returned an empty answer. Nothing was charged.")
DATABASE_BUSY_MESSAGE = Message("The database is busy, so this answer was not recorded. Nothing was charged; please try again.")
DATABASE_FULL_MESSAGE = Message(
    "The server's disk is full, so this answer was not recorded. Nothing was charged; please try again later."
)
DATABASE_GONE_MESSAGE = Message(
    "The database could not be reached, so this answer was not recorded. Nothing was charged; please try again."
)
RELEASE_RETRY_S = 1.0
SETTLE_RETRY_S = 0.2
RELEASE_REASONS = {DatabaseFullError: "disk full", DatabaseDisconnectedError: "database unreachable"}


def _chat_for_turn(user_id: int, chat_id: int | None, new_conversation: bool, prompt: str) -> int | None:
    """Inside the turn's transaction: the chat the turn belongs to, created by its first message."""
    if chat_id is None and new_conversation:
        return conversations.create_conversation(user_id, prompt)
    if chat_id is not None:
        conversations.touch_conversation(chat_id)
    return chat_id


def not_recorded_message(error: DatabaseRetryableError) -> Message:
    if isinstance(error, DatabaseFullError):
        return DATABASE_FULL_MESSAGE
    if isinstance(error, DatabaseDisconnectedError):
        return DATABASE_GONE_MESSAGE
    return DATABASE_BUSY_MESSAGE


def _settle(request_id: str, user_id: int, outcome: TurnOutcome, attempts: int = 3) -> int | DatabaseRetryableError:
    """Capture (an answer with text that was not an error) or release, together with the log row.

    Returns the credits charged, or the error when the database refused every attempt (locked, disk
    full, server gone): the turn is then an uncharged error, released in the background as soon as
    the database takes writes again.
    """
    charge = outcome.status in ("ok", "stopped") and bool(outcome.answer)
    for attempt in range(1, attempts + 1):
        try:
            with transaction():
                if charge:
                    settlement = ledger.capture_hold(request_id)
                else:
                    settlement = ledger.release_hold(request_id, outcome.status)
                charged = settlement.amount if charge and settlement.changed else 0
                interactions.finish_interaction(request_id, replace(outcome, credits_charged=charged))
            return charged
        except DatabaseRetryableError as exc:
            if attempt == attempts:
                error_id = log_error("chat:settle", exc, user_id=user_id, request_id=request_id)
                _release_when_free(request_id, replace(outcome, status="error", credits_charged=0, error_id=error_id), exc)
                return exc
            time.sleep(SETTLE_RETRY_S * attempt)  # a restarting server needs a moment; a lock usually goes at once
        except Exception as exc:  # noqa: BLE001
            log_error("chat:settle", exc, user_id=user_id, request_id=request_id)
            break
    # The hold stays active: `verify` reports it once stale, and the next start-up releases it, uncharged.
    return 0


def _release_when_free(request_id: str, outcome: TurnOutcome, error: DatabaseRetryableError) -> None:
    """Retry, off the request, the release the database refused: the hold must not outlive the lock,
    the full disk or the server's absence."""

    def release() -> None:
        while True:
            time.sleep(RELEASE_RETRY_S)
            try:
                with transaction():
                    ledger.release_hold(request_id, RELEASE_REASONS.get(type(error), "database busy"))
                    interactions.finish_interaction(request_id, outcome)
                return
            except DatabaseRetryableError:
                continue
            except Exception as exc:  # noqa: BLE001 — the next start-up releases it
                log_error("chat:settle", exc, request_id=request_id)
                return

    threading.Thread(target=release, name=f"release-{request_id}", daemon=True).start()
