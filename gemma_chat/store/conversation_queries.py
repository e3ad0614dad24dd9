"""Chats in storage: a user's conversations, the turns shown in one (its interactions, an imported
chat's imported turns before them, and the turns they replaced), and the chat each session has open.
Callers check ownership through select_conversation; the list and open-chat queries filter on the
owner themselves.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .db import Conversation, database


@dataclass(frozen=True)
class ConversationRow:
    id: int
    title: str
    updated_at: dt.datetime
    turns: int


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
    imported: bool = False  # from a file (imported_turns): answered elsewhere, never billed here


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


def insert_conversation(user_id: int, title: str, created_at: dt.datetime) -> int:
    """A new chat, used now; returns its id."""
    now = str(created_at)
    cursor = database.execute_sql(
        "INSERT INTO conversations (user_id, title, created_at, updated_at) VALUES (?, ?, ?, ?) RETURNING id",
        (user_id, title, now, now),
    )
    return cursor.fetchone()[0]


def update_conversation_used_at(conversation_id: int, updated_at: dt.datetime) -> None:
    database.execute_sql("UPDATE conversations SET updated_at = ? WHERE id = ?", (str(updated_at), conversation_id))


def update_conversation_title(conversation_id: int, title: str) -> None:
    Conversation.update(title=title).where(Conversation.id == conversation_id).execute()


def hide_conversation(conversation_id: int, deleted_at: dt.datetime) -> None:
    """Mark the chat deleted and close it in every session that has it open."""
    Conversation.update(deleted_at=deleted_at).where(Conversation.id == conversation_id).execute()
    database.execute_sql("UPDATE sessions SET conversation_id = NULL WHERE conversation_id = ?", (conversation_id,))


def select_conversation(user_id: int, conversation_id: int) -> Conversation | None:
    """The chat if `user_id` owns it and it is not deleted."""
    return Conversation.get_or_none(
        (Conversation.id == conversation_id) & (Conversation.user == user_id) & Conversation.deleted_at.is_null()
    )


def _matching(user_id: int, search: str | None) -> tuple[str, list]:
    """The user's undeleted chats, and with `search` only those whose title or one of whose
    messages contains it."""
    where = "c.user_id = ? AND c.deleted_at IS NULL"
    params: list = [user_id]
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        pattern = pattern.encode("utf-8", "replace").decode("utf-8")
        where += (
            # lower() on both sides: SQLite's LIKE folds ASCII case, PostgreSQL's folds none.
            " AND (lower(c.title) LIKE lower(?) ESCAPE '\\' OR EXISTS (SELECT 1 FROM interactions i"
            " WHERE i.conversation_id = c.id AND lower(i.prompt) LIKE lower(?) ESCAPE '\\')"
            " OR EXISTS (SELECT 1 FROM imported_turns t"
            " WHERE t.conversation_id = c.id AND lower(t.prompt) LIKE lower(?) ESCAPE '\\'))"
        )
        params += [pattern, pattern, pattern]
    return where, params


def count_conversations(user_id: int, search: str | None = None) -> int:
    where, params = _matching(user_id, search)
    return database.execute_sql(f"SELECT COUNT(*) FROM conversations c WHERE {where}", params).fetchone()[0]


def select_conversation_page(user_id: int, search: str | None, limit: int, offset: int) -> list[ConversationRow]:
    """The user's chats (as count_conversations matches them), most recently used first, each with
    its shown turns counted (a refused turn never ran)."""
    where, params = _matching(user_id, search)
    cursor = database.execute_sql(
        f"""SELECT c.id, c.title, c.updated_at,
                   (SELECT COUNT(*) FROM interactions i WHERE i.conversation_id = c.id AND i.status <> 'refused'
                    AND NOT {_hidden('c.id')})
                   + (SELECT COUNT(*) FROM imported_turns t WHERE t.conversation_id = c.id AND t.status <> 'refused')
            FROM conversations c WHERE {where}
            ORDER BY c.updated_at DESC, c.id DESC LIMIT ? OFFSET ?""",
        params + [limit, offset],
    )
    return [
        ConversationRow(id, title, updated if isinstance(updated, dt.datetime) else dt.datetime.fromisoformat(updated), turns)
        for id, title, updated, turns in cursor
    ]


_TURN_COLUMNS = "id, prompt, answer, status, model_name, credits_charged, completion_tokens, duration_ms"


def select_shown_turns(conversation_id: int, statuses: tuple[str, ...], limit: int | None = None) -> list[Turn]:
    """The chat's turns in `statuses`, newest first, without the hidden ones; the newest `limit`.

    An imported chat's imported turns are older than every turn run in it: they come last, read only
    when the turns run here do not fill `limit` (a chat that was never imported costs one indexed
    lookup that finds nothing).
    """
    turns = _select_shown_interactions(conversation_id, statuses, limit)
    if limit is None or len(turns) < limit:
        turns += _select_imported_turns(conversation_id, statuses, None if limit is None else limit - len(turns))
    return turns


def _select_imported_turns(conversation_id: int, statuses: tuple[str, ...], limit: int | None) -> list[Turn]:
    placeholders = ", ".join("?" * len(statuses))
    sql = f"""SELECT id, prompt, answer, status, model_name FROM imported_turns
              WHERE conversation_id = ? AND status IN ({placeholders}) ORDER BY id DESC"""
    params: list = [conversation_id, *statuses]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [Turn(*row, 0, None, None, imported=True) for row in database.execute_sql(sql, params).fetchall()]


def _select_shown_interactions(conversation_id: int, statuses: tuple[str, ...], limit: int | None) -> list[Turn]:
    placeholders = ", ".join("?" * len(statuses))
    sql = f"""SELECT {_TURN_COLUMNS}
              FROM interactions i WHERE conversation_id = ? AND status IN ({placeholders})
              AND NOT {_hidden('?')}
              ORDER BY id DESC"""
    params: list = [conversation_id, *statuses, conversation_id]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [Turn(*row) for row in database.execute_sql(sql, params).fetchall()]


def select_replacements(conversation_id: int) -> dict[int, tuple[int | None, bool]]:
    """The chat's turns that replaced another or were replaced, each as id → (the id it replaced,
    whether it has an answer that was charged for: ok or stopped, with text)."""
    cursor = database.execute_sql(
        """SELECT id, replaces_id, CASE WHEN status IN ('ok', 'stopped') AND answer <> '' THEN 1 ELSE 0 END
           FROM interactions WHERE conversation_id = ? AND (replaces_id IS NOT NULL OR id IN
               (SELECT replaces_id FROM interactions WHERE conversation_id = ? AND replaces_id IS NOT NULL))""",
        (conversation_id, conversation_id),
    )
    return {id: (replaces_id, bool(answered)) for id, replaces_id, answered in cursor}


def select_turns(conversation_id: int, ids: list[int]) -> list[Turn]:
    """The chat's turns with these ids (hidden ones too), oldest first."""
    if not ids:
        return []
    placeholders = ", ".join("?" * len(ids))
    cursor = database.execute_sql(
        f"SELECT {_TURN_COLUMNS} FROM interactions WHERE conversation_id = ? AND id IN ({placeholders}) ORDER BY id",
        (conversation_id, *ids),
    )
    return [Turn(*row) for row in cursor.fetchall()]


@dataclass(frozen=True)
class ChatListRow:
    id: int
    title: str
    updated_at: dt.datetime


def select_chat_list(user_id: int, search: str | None, limit: int) -> list[ChatListRow]:
    """The sidebar's rows: the user's chats (as count_conversations matches them), most recently
    used first, without counting turns (the sidebar shows none)."""
    where, params = _matching(user_id, search)
    cursor = database.execute_sql(
        f"SELECT c.id, c.title, c.updated_at FROM conversations c WHERE {where} ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
        params + [limit],
    )
    return [
        ChatListRow(id, title, updated if isinstance(updated, dt.datetime) else dt.datetime.fromisoformat(updated))
        for id, title, updated in cursor
    ]


# --- an imported chat ----------------------------------------------------------------------------

_IMPORT_BATCH = 100  # rows per INSERT: 600 parameters, under SQLite's oldest limit (999)


def count_imported_turns(user_id: int) -> int:
    """Every turn the user ever imported, in deleted chats too (a deleted chat's rows stay stored)."""
    return database.execute_sql(
        """SELECT COUNT(*) FROM imported_turns t JOIN conversations c ON c.id = t.conversation_id
           WHERE c.user_id = ?""",
        (user_id,),
    ).fetchone()[0]


def insert_imported_turns(conversation_id: int, turns: list[tuple[str, str, str, str]], created_at: dt.datetime) -> None:
    """The chat's imported turns, (prompt, answer, status, model_name) each, in the order given."""
    for start in range(0, len(turns), _IMPORT_BATCH):
        batch = turns[start:start + _IMPORT_BATCH]
        values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(batch))
        params = [value for turn in batch for value in (conversation_id, *turn, str(created_at))]
        database.execute_sql(
            f"INSERT INTO imported_turns (conversation_id, prompt, answer, status, model_name, created_at) VALUES {values}",
            params,
        )


# --- a chat's settings, and the user's default for new chats --------------------------------------


def update_chat_settings(conversation_id: int, tier: str | None, system_prompt: str) -> None:
    Conversation.update(tier=tier, system_prompt=system_prompt).where(Conversation.id == conversation_id).execute()


def select_default_system_prompt(user_id: int) -> str:
    row = database.execute_sql("SELECT default_system_prompt FROM users WHERE id = ?", (user_id,)).fetchone()
    return row[0] if row else ""


def update_default_system_prompt(user_id: int, system_prompt: str) -> None:
    database.execute_sql("UPDATE users SET default_system_prompt = ? WHERE id = ?", (system_prompt, user_id))


# --- the chat open in each signed-in browser ----------------------------------------------------


def select_open_conversation(user_id: int, session_id: int) -> int | None:
    """The chat the user's session has open, if it is still theirs and not deleted."""
    row = database.execute_sql(
        """SELECT s.conversation_id FROM sessions s JOIN conversations c ON c.id = s.conversation_id
           WHERE s.id = ? AND s.user_id = ? AND c.user_id = ? AND c.deleted_at IS NULL""",
        (session_id, user_id, user_id),
    ).fetchone()
    return row[0] if row else None


def update_open_conversation(user_id: int, session_id: int, conversation_id: int | None) -> None:
    database.execute_sql(
        "UPDATE sessions SET conversation_id = ? WHERE id = ? AND user_id = ?", (conversation_id, session_id, user_id)
    )
