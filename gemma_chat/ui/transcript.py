"""How a chat's turns look in the Chatbot, stored or still running: each prompt and answer as safe
markdown, an answer with its footer (figures, model, price) and, when it replaced earlier answers, the
arrows that page through them (‹ 2/2 ›). Shared by the chat and by whatever else shows a chat again,
so no screen part imports another.
"""

from __future__ import annotations

from ..chats import conversations, turn as chat_turn, versions
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


# The href of ‹ and ›: the page's script turns a click on one into a `version_request` event naming
# the version (session.py PAGE_JS, versions.py); no address is ever visited.
VERSION_LINK = "#gc-version-"


def version_bar(shown: versions.ShownTurn, language: str = "en") -> str:
    """"‹ 2/3 ›" under an answer that replaced earlier ones, each arrow a link to the version beside
    it (unlinked at either end); empty for an answer that replaced none."""
    if len(shown.version_ids) < 2:
        return ""

    def arrow(mark: str, step: int, title: str) -> str:
        target = shown.neighbour(step)
        return f'[{mark}]({VERSION_LINK}{target} "{text(language, title)}")' if target else mark

    counted = f"{shown.position}/{len(shown.version_ids)}"
    return f"{arrow('‹', -1, 'earlier_version')} {counted} {arrow('›', 1, 'later_version')}"


def bar_after_replacement(user_id: int, conversation_id: int, replaced_id: int, language: str = "en") -> str:
    """The bar under the answer that has just replaced `replaced_id` (‹ goes back to it); empty when
    it replaced no answer, or a newer turn has come after it meanwhile."""
    last = versions.shown_turns(user_id, conversation_id)[-1:]
    return version_bar(last[0], language) if last and replaced_id in last[0].version_ids else ""


def answer_footer(language: str, figures: str, model: str, credits: int | None, bar: str = "") -> str:
    """The lines under an answer: its figures, "— model · 3 credits" (None: imported, paid for where it
    was answered), and `bar`."""
    model = " ".join(model.split())  # one line: an imported model's name may hold line breaks
    if credits is None:
        priced = text(language, "answer_footer_imported", model=model)
    else:
        priced = text(language, "answer_footer", model=model, credits=credits)
    return "\n".join(line for line in (figures, priced, bar) if line)


def live_bubble(update: chat_turn.TurnUpdate, language: str = "en", bar: str = "") -> str:
    """The answer of a turn as it runs: waiting, streaming, then with its footer (and `bar` under it)."""
    if update.status == "waiting":
        if update.restarting:
            return as_text(text(language, "model_restarting", model=update.model_label))
        if update.queue_position:
            return as_text(text(language, "queue_position", model=update.model_label, position=update.queue_position))
        return "…"
    if update.status == "streaming":
        return as_text(update.answer)
    parts = [update.answer] if update.answer else []
    if update.message:
        parts.append(translated(language, update.message))
    footer = answer_footer(language, turn_figures(update, language), update.model_label, update.credits_charged, bar)
    return with_footer("\n\n".join(parts), footer)


def stored_bubble(turn: conversations.Turn, language: str = "en", bar: str = "") -> str:
    """A turn of a reopened chat, with the footer it had when it was answered (and `bar` under it)."""
    if turn.status == "refused":  # never ran: marked, with the way to send it again (an imported one: none here)
        return as_text(text(language, "answer_refused_imported" if turn.imported else "answer_refused"))
    parts = [turn.answer] if turn.answer else []
    if turn.status == "ok" and not turn.answer:
        parts.append(translated(language, chat_turn.EMPTY_ANSWER_MESSAGE))
    elif turn.status == "stopped":
        parts.append(text(language, "answer_stopped"))
    elif turn.status in ("error", "interrupted"):
        parts.append(text(language, "answer_failed"))
    elif turn.status == "pending":
        parts.append("…")
    figures = turn_figures(
        chat_turn.TurnUpdate("ok", completion_tokens=turn.completion_tokens, duration_ms=turn.duration_ms), language
    )
    credits = None if turn.imported else turn.credits_charged  # an imported one was paid for where it was exported
    return with_footer("\n\n".join(parts), answer_footer(language, figures, turn.model_name, credits, bar))


def chat_messages(turns: list[versions.ShownTurn | conversations.Turn], language: str = "en") -> list[dict]:
    """The Chatbot's messages for a chat's turns, each at the version shown (a plain Turn: its only one)."""
    messages = []
    for item in turns:
        turn, bar = (item.turn, version_bar(item, language)) if isinstance(item, versions.ShownTurn) else (item, "")
        messages += [
            {"role": "user", "content": as_text(turn.prompt)},
            {"role": "assistant", "content": stored_bubble(turn, language, bar)},
        ]
    return messages
