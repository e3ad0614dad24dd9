"""How a chat's stored turns look in the Chatbot: each prompt and answer as safe markdown, an
answer with its footer (figures, model, price). Shared by the chat and by whatever else shows a chat
again, so no screen part imports another.
"""

from __future__ import annotations

from ..chats import conversations, turn as chat_turn
from .markup import as_markdown, with_footer
from .text import text, translated


def as_text(text: str) -> str:
    """A prompt or answer for the Chatbot: its markdown renders, its HTML shows as text (markup.py)."""
    return as_markdown(text)


def turn_figures(update: chat_turn.TurnUpdate, language: str = "en") -> str:
    """"24 tokens · 41.3 tokens/s · 0.6 s" for a finished answer; empty when the model gave no figures."""
    if not update.completion_tokens or not update.duration_ms:
        return ""
    seconds = update.duration_ms / 1000
    return text(
        language, "turn_figures", tokens=update.completion_tokens, speed=f"{update.completion_tokens / seconds:.1f}",
        seconds=f"{seconds:.1f}",
    )


def stored_bubble(turn: conversations.Turn, language: str = "en") -> str:
    """A turn of a reopened chat, with the footer it had when it was answered."""
    if turn.status == "refused":  # never ran: marked, with the way to send it again
        return as_text(text(language, "answer_refused"))
    parts = [turn.answer] if turn.answer else []
    if turn.status == "ok" and not turn.answer:
        parts.append(translated(language, chat_turn.EMPTY_ANSWER_MESSAGE))
    elif turn.status == "stopped":
        parts.append(text(language, "answer_stopped"))
    elif turn.status in ("error", "interrupted"):
        parts.append(text(language, "answer_failed"))
    elif turn.status == "pending":
        parts.append("…")
    footer = text(language, "answer_footer", model=turn.model_name, credits=turn.credits_charged)
    figures = turn_figures(
        chat_turn.TurnUpdate("ok", completion_tokens=turn.completion_tokens, duration_ms=turn.duration_ms), language
    )
    return as_text(with_footer("\n\n".join(parts), f"{figures}\n{footer}" if figures else footer))


def chat_messages(turns: list[conversations.Turn], language: str = "en") -> list[dict]:
    messages = []
    for turn in turns:
        messages += [
            {"role": "user", "content": as_text(turn.prompt)}, {"role": "assistant", "content": stored_bubble(turn, language)}
        ]
    return messages
