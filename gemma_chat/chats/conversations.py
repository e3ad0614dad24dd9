"""Chats: a user's conversations, their turns, the context a continued chat gives the model, and
which chat each signed-in browser has open (kept with its session, so a reload shows it again).

Every function takes the owner's id and touches only that user's chats; another user's chat, a
deleted one or a made-up id is "not found". Deleting hides a chat from its owner only: its
interactions and ledger rows stay, so the admin's reports do not change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ValidationError
from ..numbers import page_bounds, parse_page
from ..store import conversation_queries as queries
from ..store.conversation_queries import ChatListRow, ConversationRow, Turn
from ..store.db import Conversation, transaction, utcnow

TITLE_CHARS = 60
MAX_TITLE_CHARS = 200
CONTEXT_TURNS = 50  # the newest turns given to the model; the engine trims them further to fit n_ctx
# A refused turn never ran, but it is shown (marked refused, with a retry): nothing typed is lost.
SHOWN_STATUSES = ("ok", "stopped", "error", "interrupted", "pending", "refused")
MAX_SYSTEM_PROMPT_CHARS = 4000
MAX_TIER_CHARS = 64
SIDEBAR_CHATS = 200  # the sidebar's longest list; Search finds the older ones
# A turn regenerated or edited is hidden once its replacement is running or has an answer; a
# replacement that failed is hidden instead (the rule, in SQL, is in store/conversation_queries.py).


IMPORTED_NOT_REPLACEABLE = "An imported message cannot be regenerated or edited; send a new message instead."

_MARKS = re.compile(r"`{3,}[\w+-]*|[`*_#>]+")


class ConversationNotFoundError(ValidationError):
    pass


@dataclass(frozen=True)
class ConversationPage:
    rows: list[ConversationRow]
    page: int
    total_pages: int
    total: int


def title_from(message: str) -> str:
    """A chat's first title: the start of its first message, on one line, without markdown's
    fences, emphasis and heading marks (a title is plain text)."""
    text = " ".join(_MARKS.sub(" ", str(message or "")).split())
    if not text:
        return "New chat"
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"


def clean_title(title) -> str:
    if not isinstance(title, str):
        raise ValidationError("Enter a title for the chat.")
    text = " ".join(title.split())
    if not text:
        raise ValidationError("Enter a title for the chat.")
    if len(text) > MAX_TITLE_CHARS:
        raise ValidationError("A chat title has at most {n} characters.", n=MAX_TITLE_CHARS)
    if "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise ValidationError("The title contains an invalid character.")
    return text


def _conversation_id(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise ConversationNotFoundError("That chat was not found.")
    return value


def create_conversation(user_id: int, title: str) -> int:
    """A new chat (inside the caller's transaction when there is one)."""
    return queries.insert_conversation(user_id, title_from(title), utcnow())


def touch_conversation(conversation_id: int) -> None:
    queries.update_conversation_used_at(conversation_id, utcnow())


def get_conversation(user_id: int, conversation_id) -> Conversation:
    """The user's own, undeleted chat; ConversationNotFoundError for anything else."""
    found = queries.select_conversation(user_id, _conversation_id(conversation_id))
    if found is None:
        raise ConversationNotFoundError("That chat was not found.")
    return found


def list_conversations(user_id: int, page=1, page_size: int = 20, search: str | None = None) -> ConversationPage:
    """The user's chats, most recently used first; `search` matches titles and the user's messages."""
    page = parse_page(page)
    search = _search_text(search)
    total = queries.count_conversations(user_id, search)
    page, total_pages = page_bounds(page, total, page_size)
    rows = queries.select_conversation_page(user_id, search, page_size, (page - 1) * page_size)
    return ConversationPage(rows, page, total_pages, total)


def list_chats(user_id: int, search=None, limit: int = SIDEBAR_CHATS) -> list[ChatListRow]:
    """The sidebar: the user's chats, most recently used first; `search` as list_conversations'."""
    return queries.select_chat_list(user_id, _search_text(search), limit)


def _search_text(search) -> str | None:
    if not isinstance(search, str) or not search.strip():
        return None
    if len(search) > 200 or "\x00" in search:
        raise ValidationError("Search for at most 200 characters of text.")
    return search.strip()


def rename_conversation(user_id: int, conversation_id, title) -> Conversation:
    conversation = get_conversation(user_id, conversation_id)
    title = clean_title(title)
    with transaction():
        queries.update_conversation_title(conversation.id, title)
    return get_conversation(user_id, conversation.id)


def delete_conversation(user_id: int, conversation_id) -> None:
    """Hide the chat from its owner; its turns and charges stay on record."""
    conversation = get_conversation(user_id, conversation_id)
    with transaction():
        queries.hide_conversation(conversation.id, utcnow())


def conversation_turns(user_id: int, conversation_id, *, limit: int | None = None) -> list[Turn]:
    """The chat's turns, oldest first, without the ones a later turn regenerated or edited."""
    conversation = get_conversation(user_id, conversation_id)
    return list(reversed(queries.select_shown_turns(conversation.id, SHOWN_STATUSES, limit)))


def last_turn(user_id: int, conversation_id) -> Turn | None:
    """The chat's newest shown turn: the one Regenerate and Edit last message replace."""
    turns = conversation_turns(user_id, conversation_id, limit=1)
    return turns[-1] if turns else None


def check_replaceable(user_id: int, conversation_id, turn_id) -> Turn:
    """The turn a regenerated or edited one replaces: only the chat's newest, and not while it runs."""
    last = last_turn(user_id, conversation_id)
    if last is not None and last.imported:
        # Its row is not an interaction, so a replacement could not name it; a new message can follow it.
        raise ValidationError(IMPORTED_NOT_REPLACEABLE)
    if last is None or last.id != turn_id:
        raise ValidationError("Only the last message of the chat can be regenerated or edited.")
    if last.status == "pending":
        raise ValidationError("Wait for the answer to finish (or press Stop) first.")
    return last


def context_of(turns: list[Turn]) -> list[tuple[str, str]]:
    """(prompt, answer) pairs the model sees again: the turns that have an answer."""
    return [(turn.prompt, turn.answer) for turn in turns if turn.answer and turn.status in ("ok", "stopped")]


# --- the chat open in each signed-in browser ----------------------------------------------------


def open_conversation_of(user_id: int, session_id: int) -> int | None:
    return queries.select_open_conversation(user_id, session_id)


def set_open_conversation(user_id: int, session_id: int, conversation_id: int | None) -> None:
    if conversation_id is not None:
        get_conversation(user_id, conversation_id)
    with transaction():
        queries.update_open_conversation(user_id, session_id, conversation_id)


# --- each chat's settings, and the user's default for new chats ---------------------------------


@dataclass(frozen=True)
class ChatSettings:
    tier: str | None  # None: the app's default model
    system_prompt: str


def clean_system_prompt(value) -> str:
    """A system prompt as stored: text without NUL, at most MAX_SYSTEM_PROMPT_CHARS; None is none."""
    if value is None:
        return ""
    if not isinstance(value, str) or "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValidationError("The system prompt contains an invalid character.")
    value = value.strip()
    if len(value) > MAX_SYSTEM_PROMPT_CHARS:
        raise ValidationError("A system prompt has at most {n:,} characters.", n=MAX_SYSTEM_PROMPT_CHARS)
    return value


def chat_settings(user_id: int, conversation_id) -> ChatSettings:
    conversation = get_conversation(user_id, conversation_id)
    return ChatSettings(conversation.tier, conversation.system_prompt or "")


def save_chat_settings(user_id: int, conversation_id, tier, system_prompt) -> ChatSettings:
    """Keep the chat's model and system prompt (the model only when it is a name, as the page sends)."""
    conversation = get_conversation(user_id, conversation_id)
    system_prompt = clean_system_prompt(system_prompt)
    tier = tier if isinstance(tier, str) and 0 < len(tier) <= MAX_TIER_CHARS else conversation.tier
    with transaction():
        queries.update_chat_settings(conversation.id, tier, system_prompt)
    return ChatSettings(tier, system_prompt)


def default_system_prompt(user_id: int) -> str:
    return queries.select_default_system_prompt(user_id)


def set_default_system_prompt(user_id: int, system_prompt) -> str:
    system_prompt = clean_system_prompt(system_prompt)
    with transaction():
        queries.update_default_system_prompt(user_id, system_prompt)
    return system_prompt
