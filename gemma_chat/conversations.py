"""Chats: a user's conversations, their turns, the context a continued chat gives the model, and
which chat each signed-in browser has open (kept with its session, so a reload shows it again).

Every function takes the owner's id and touches only that user's chats; another user's chat, a
deleted one or a made-up id is "not found". Deleting hides a chat from its owner only: its
interactions and ledger rows stay, so the admin's reports do not change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .store.db import Conversation, database, transaction, utcnow
from .errors import ValidationError
from .history import page_bounds, parse_page

TITLE_CHARS = 60
MAX_TITLE_CHARS = 200
CONTEXT_TURNS = 50  # the newest turns given to the model; the engine trims them further to fit n_ctx
SHOWN_STATUSES = ("ok", "stopped", "error", "interrupted", "pending")  # a refused turn never ran
# A turn regenerated or edited (a later turn names it in replaces_id) is hidden once its replacement
# is running or has an answer; a replacement that failed (or was refused) is hidden instead, and the
# old answer stays. Both rows stay on record, with their charges.


def _takes_place(row: str) -> str:
    return f"({row}.status = 'pending' OR ({row}.status IN ('ok', 'stopped') AND {row}.answer <> ''))"


def _hidden(conversation: str) -> str:
    """Whether turn `i` of chat `conversation` (an SQL expression) is hidden, per the rule above.

    The replaced ids are one list per chat, not looked up per turn: with a lookup per turn, opening
    a chat of 200 turns read 40,000 rows (bench/chats.py).
    """
    return f"""(i.replaces_id IS NOT NULL AND NOT {_takes_place('i')}
              OR i.id IN (SELECT r.replaces_id FROM interactions r WHERE r.conversation_id = {conversation}
                          AND r.replaces_id IS NOT NULL AND {_takes_place('r')}))"""


class ConversationNotFoundError(ValidationError):
    pass


@dataclass(frozen=True)
class ConversationRow:
    id: int
    title: str
    updated_at: dt.datetime
    turns: int


@dataclass(frozen=True)
class ConversationPage:
    rows: list[ConversationRow]
    page: int
    total_pages: int
    total: int


@dataclass(frozen=True)
class Turn:
    id: int
    prompt: str
    answer: str
    status: str
    model_name: str
    credits_charged: int
    completion_tokens: int | None
    duration_ms: int | None


def title_from(message: str) -> str:
    """A chat's first title: the start of its first message, on one line."""
    text = " ".join(str(message or "").split())
    if not text:
        return "New chat"
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"


def _clean_title(title) -> str:
    if not isinstance(title, str):
        raise ValidationError("Enter a title for the chat.")
    text = " ".join(title.split())
    if not text:
        raise ValidationError("Enter a title for the chat.")
    if len(text) > MAX_TITLE_CHARS:
        raise ValidationError(f"A chat title has at most {MAX_TITLE_CHARS} characters.")
    if "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise ValidationError("The title contains an invalid character.")
    return text


def _conversation_id(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise ConversationNotFoundError("That chat was not found.")
    return value


def create_conversation(user_id: int, title: str) -> int:
    """A new chat (inside the caller's transaction when there is one)."""
    now = str(utcnow())
    cursor = database.execute_sql(
        "INSERT INTO conversations (user_id, title, created_at, updated_at) VALUES (?, ?, ?, ?) RETURNING id",
        (user_id, title_from(title), now, now),
    )
    return cursor.fetchone()[0]


def touch_conversation(conversation_id: int) -> None:
    database.execute_sql("UPDATE conversations SET updated_at = ? WHERE id = ?", (str(utcnow()), conversation_id))


def get_conversation(user_id: int, conversation_id) -> Conversation:
    """The user's own, undeleted chat; ConversationNotFoundError for anything else."""
    found = Conversation.get_or_none(
        (Conversation.id == _conversation_id(conversation_id))
        & (Conversation.user == user_id)
        & Conversation.deleted_at.is_null()
    )
    if found is None:
        raise ConversationNotFoundError("That chat was not found.")
    return found


def list_conversations(user_id: int, page=1, page_size: int = 20, search: str | None = None) -> ConversationPage:
    """The user's chats, most recently used first; `search` matches titles and the user's messages."""
    page = parse_page(page)
    where = "c.user_id = ? AND c.deleted_at IS NULL"
    params: list = [user_id]
    if isinstance(search, str) and search.strip():
        if len(search) > 200 or "\x00" in search:
            raise ValidationError("Search for at most 200 characters of text.")
        pattern = "%" + search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        pattern = pattern.encode("utf-8", "replace").decode("utf-8")
        where += (
            # lower() on both sides: SQLite's LIKE folds ASCII case, PostgreSQL's folds none.
            " AND (lower(c.title) LIKE lower(?) ESCAPE '\\' OR EXISTS (SELECT 1 FROM interactions i"
            " WHERE i.conversation_id = c.id AND lower(i.prompt) LIKE lower(?) ESCAPE '\\'))"
        )
        params += [pattern, pattern]
    total = database.execute_sql(f"SELECT COUNT(*) FROM conversations c WHERE {where}", params).fetchone()[0]
    page, total_pages = page_bounds(page, total, page_size)
    cursor = database.execute_sql(
        f"""SELECT c.id, c.title, c.updated_at,
                   (SELECT COUNT(*) FROM interactions i WHERE i.conversation_id = c.id AND i.status <> 'refused'
                    AND NOT {_hidden('c.id')})
            FROM conversations c WHERE {where}
            ORDER BY c.updated_at DESC, c.id DESC LIMIT ? OFFSET ?""",
        params + [page_size, (page - 1) * page_size],
    )
    rows = [
        ConversationRow(id, title, updated if isinstance(updated, dt.datetime) else dt.datetime.fromisoformat(updated), turns)
        for id, title, updated, turns in cursor
    ]
    return ConversationPage(rows, page, total_pages, total)


def rename_conversation(user_id: int, conversation_id, title) -> Conversation:
    conversation = get_conversation(user_id, conversation_id)
    title = _clean_title(title)
    with transaction():
        Conversation.update(title=title).where(Conversation.id == conversation.id).execute()
    return get_conversation(user_id, conversation.id)


def delete_conversation(user_id: int, conversation_id) -> None:
    """Hide the chat from its owner; its turns and charges stay on record."""
    conversation = get_conversation(user_id, conversation_id)
    with transaction():
        Conversation.update(deleted_at=utcnow()).where(Conversation.id == conversation.id).execute()
        database.execute_sql("UPDATE sessions SET conversation_id = NULL WHERE conversation_id = ?", (conversation.id,))


def conversation_turns(user_id: int, conversation_id, *, limit: int | None = None) -> list[Turn]:
    """The chat's turns, oldest first, without the ones a later turn regenerated or edited."""
    conversation = get_conversation(user_id, conversation_id)
    statuses = ", ".join("?" * len(SHOWN_STATUSES))
    sql = f"""SELECT id, prompt, answer, status, model_name, credits_charged, completion_tokens, duration_ms
              FROM interactions i WHERE conversation_id = ? AND status IN ({statuses})
              AND NOT {_hidden('?')}
              ORDER BY id DESC"""
    params: list = [conversation.id, *SHOWN_STATUSES, conversation.id]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [Turn(*row) for row in reversed(database.execute_sql(sql, params).fetchall())]


def last_turn(user_id: int, conversation_id) -> Turn | None:
    """The chat's newest shown turn: the one Regenerate and Edit last message replace."""
    turns = conversation_turns(user_id, conversation_id, limit=1)
    return turns[-1] if turns else None


def check_replaceable(user_id: int, conversation_id, turn_id) -> Turn:
    """The turn a regenerated or edited one replaces: only the chat's newest, and not while it runs."""
    last = last_turn(user_id, conversation_id)
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
    row = database.execute_sql(
        """SELECT s.conversation_id FROM sessions s JOIN conversations c ON c.id = s.conversation_id
           WHERE s.id = ? AND s.user_id = ? AND c.user_id = ? AND c.deleted_at IS NULL""",
        (session_id, user_id, user_id),
    ).fetchone()
    return row[0] if row else None


def set_open_conversation(user_id: int, session_id: int, conversation_id: int | None) -> None:
    if conversation_id is not None:
        get_conversation(user_id, conversation_id)
    with transaction():
        database.execute_sql(
            "UPDATE sessions SET conversation_id = ? WHERE id = ? AND user_id = ?", (conversation_id, session_id, user_id)
        )
