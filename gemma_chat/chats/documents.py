"""A chat as a JSON document, the one place that knows the format: export writes a chat (or all of a
user's chats), and import reads such a document back and creates its chats for the user importing it.

FORMAT: {"format", "title", "model", "system_prompt", "exported_at", "turns": [{"prompt", "answer",
"status", "model", "credits"}, …]}. ALL_FORMAT: {"format", "exported_at", "chats": [a FORMAT chat, …]}.

An import is all or nothing (one transaction), and it never touches the money: its turns were answered
and paid for where they were exported, so they are imported turns (store/schema.py, 0011), not
interactions; History, the receipts, the reports and `verify` never see them. "credits" and
"exported_at" are read by no one, and a turn exported while its answer was still coming ("pending")
comes back as interrupted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ..errors import ValidationError
from ..store import conversation_queries as queries
from ..store.db import transaction, utcnow
from . import conversations

FORMAT = "gemma-chat.chat/1"
ALL_FORMAT = "gemma-chat.chats/1"
ALL_PAGE_SIZE = 100

MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
MAX_CHATS = 1000
MAX_TURNS = 1000  # in one chat
MAX_ALL_TURNS = 10_000  # in one file: one import is one transaction, and it should stay a short one
# An answer is as long as its tier's max_tokens let it be (an operator may raise it, a remote tier's
# too), so only the file's own limit bounds it; the prompt has the chat's own limit.
MAX_ANSWER_CHARS = 1_000_000
MAX_MODEL_NAME_CHARS = 200
# Importing costs no credits, so the rows one account may add are bounded here (five full files).
MAX_IMPORTED_TURNS_PER_USER = 5 * MAX_ALL_TURNS
IMPORTED_STATUSES = ("ok", "stopped", "error", "interrupted", "refused")


class ChatImportError(ValidationError):
    """A document that cannot be imported; the message says what is wrong, and where."""


@dataclass(frozen=True)
class ChatToImport:
    title: str
    tier: str | None
    system_prompt: str
    turns: list[tuple[str, str, str, str]]  # (prompt, answer, status, model name), oldest first


@dataclass(frozen=True)
class Imported:
    chat_ids: list[int]  # in the document's order: its first chat lists first in the sidebar
    turns: int


# --- writing ----------------------------------------------------------------------------------------


def _stamp() -> str:
    return f"{utcnow():%Y-%m-%dT%H:%M:%SZ}"


def chat_document(user_id: int, conversation_id: int) -> dict:
    """The user's chat as FORMAT: the turns it shows, oldest first."""
    conversation = conversations.get_conversation(user_id, conversation_id)
    turns = conversations.conversation_turns(user_id, conversation.id)
    return {
        "format": FORMAT,
        "title": conversation.title,
        "model": conversation.tier,
        "system_prompt": conversation.system_prompt or "",
        "exported_at": _stamp(),
        "turns": [
            {"prompt": t.prompt, "answer": t.answer, "status": t.status, "model": t.model_name, "credits": t.credits_charged}
            for t in turns
        ],
    }


def all_chats_document(user_id: int) -> dict:
    """Every chat of the user as ALL_FORMAT, most recently used first."""
    chats, page = [], 1
    while True:
        listing = conversations.list_conversations(user_id, page=page, page_size=ALL_PAGE_SIZE)
        chats += [chat_document(user_id, row.id) for row in listing.rows]
        if page >= listing.total_pages:
            break
        page += 1
    return {"format": ALL_FORMAT, "exported_at": _stamp(), "chats": chats}


# --- reading ----------------------------------------------------------------------------------------


def check_size(size: int) -> None:
    """A file of `size` bytes may be imported (the page checks before it sends one)."""
    if size > MAX_DOCUMENT_BYTES:
        megabytes = math.ceil(size * 10 / 2**20) / 10
        raise ChatImportError("The file is {megabytes} MB; the limit is {limit} MB.", megabytes=megabytes, limit=MAX_DOCUMENT_BYTES // 2**20)


def read_document(document: str | bytes, *, max_message_chars: int) -> list[ChatToImport]:
    """The chats of a FORMAT or ALL_FORMAT document, each checked; ChatImportError names the first
    thing wrong (with the chat and turn it is in)."""
    data = _parse(document)
    if not isinstance(data, dict):
        raise ChatImportError("This is not a gemma-chat export: the file holds no JSON object.")
    if data.get("format") == FORMAT:
        return [_read_chat(data, max_message_chars, None, [0])]
    if data.get("format") != ALL_FORMAT:
        raise ChatImportError(
            "This is not a gemma-chat export: its \"format\" is not {format} or {all_format}.", format=FORMAT, all_format=ALL_FORMAT
        )
    chats = data.get("chats")
    if not isinstance(chats, list):
        raise ChatImportError("\"chats\" must be a list of chats.")
    if not chats:
        raise ChatImportError("The file has no chats.")
    if len(chats) > MAX_CHATS:
        raise ChatImportError("The file has {n:,} chats; at most {limit:,} can be imported at once.", n=len(chats), limit=MAX_CHATS)
    counted = [0]
    return [_read_chat(chat, max_message_chars, number, counted) for number, chat in enumerate(chats, 1)]


def _parse(document) -> object:
    if isinstance(document, (bytes, bytearray)):
        check_size(len(document))
        try:
            document = bytes(document).decode("utf-8")
        except UnicodeDecodeError:
            raise ChatImportError("The file is not UTF-8 text.") from None
    if not isinstance(document, str):
        raise ChatImportError("This is not a gemma-chat export: the file holds no JSON object.")
    if len(document) > MAX_DOCUMENT_BYTES:  # a character is at least a byte: too large before counting them
        check_size(len(document))
    check_size(len(document.encode("utf-8", "surrogatepass")))
    try:
        return json.loads(document.removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise ChatImportError("The file is not valid JSON (line {line}, column {column}).", line=exc.lineno, column=exc.colno) from None
    except (ValueError, RecursionError):  # a number of thousands of digits; arrays nested thousands deep
        raise ChatImportError("The file is not valid JSON.") from None


def _read_chat(chat, max_message_chars: int, number: int | None, counted: list[int]) -> ChatToImport:
    """One chat of the document (`number` counts from 1 in ALL_FORMAT; None: the document is the chat)."""
    try:
        if not isinstance(chat, dict):
            raise ChatImportError("This is not a chat: a chat is a JSON object.")
        if number is not None and "format" in chat and chat["format"] != FORMAT:
            raise ChatImportError("Its \"format\" is not {format}.", format=FORMAT)
        turns = chat.get("turns")
        if not isinstance(turns, list):
            raise ChatImportError("\"turns\" must be a list of turns.")
        if len(turns) > MAX_TURNS:
            raise ChatImportError("The chat has {n:,} turns; at most {limit:,} can be imported.", n=len(turns), limit=MAX_TURNS)
        counted[0] += len(turns)
        if counted[0] > MAX_ALL_TURNS:
            raise ChatImportError("The file has more than {limit:,} turns; import fewer chats at once.", limit=MAX_ALL_TURNS)
        title, tier, system_prompt = _title(chat), _tier(chat), _system_prompt(chat)
    except ValidationError as exc:  # conversations' own refusals of a title or a system prompt too
        if number is None:
            raise ChatImportError(exc.template, **exc.params) from None
        raise ChatImportError("Chat {chat}: {reason}", chat=number, reason=exc.message) from None
    read = []
    for position, turn in enumerate(turns, 1):
        try:
            read.append(_read_turn(turn, max_message_chars))
        except ChatImportError as exc:
            if number is None:
                raise ChatImportError("Turn {turn}: {reason}", turn=position, reason=exc.message) from None
            raise ChatImportError("Chat {chat}, turn {turn}: {reason}", chat=number, turn=position, reason=exc.message) from None
    if not title:  # a blank title: the chat is named as a new chat is, after its first message
        title = conversations.title_from(read[0][0] if read else "")
    return ChatToImport(title, tier, system_prompt, read)


def _text(value, field: str) -> str:
    if not isinstance(value, str):
        raise ChatImportError("\"{field}\" must be text.", field=field)
    if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ChatImportError("\"{field}\" contains a NUL or an invalid character.", field=field)
    return value


def _title(chat: dict) -> str:
    if "title" not in chat:
        raise ChatImportError("The chat has no \"title\".")
    title = " ".join(_text(chat["title"], "title").split())
    return conversations.clean_title(title) if title else ""


def _tier(chat: dict) -> str | None:
    tier = chat.get("model")
    if tier is None or tier == "":
        return None
    tier = _text(tier, "model")
    if len(tier) > conversations.MAX_TIER_CHARS:
        raise ChatImportError(
            "\"{field}\" is {length:,} characters long; the limit is {limit}.", field="model", length=len(tier), limit=conversations.MAX_TIER_CHARS
        )
    return tier


def _system_prompt(chat: dict) -> str:
    value = chat.get("system_prompt")
    return conversations.clean_system_prompt(None if value is None else _text(value, "system_prompt"))


def _read_turn(turn, max_message_chars: int) -> tuple[str, str, str, str]:
    if not isinstance(turn, dict):
        raise ChatImportError("This is not a turn: a turn is a JSON object.")
    prompt = _text(turn.get("prompt"), "prompt").strip()
    if not prompt:
        raise ChatImportError("The message is empty.")
    if len(prompt) > max_message_chars:
        raise ChatImportError(
            "The message is {length:,} characters long; the limit is {limit:,}.", length=len(prompt), limit=max_message_chars
        )
    answer = "" if turn.get("answer") is None else _text(turn["answer"], "answer")
    if len(answer) > MAX_ANSWER_CHARS:
        raise ChatImportError(
            "The answer is {length:,} characters long; the limit is {limit:,}.", length=len(answer), limit=MAX_ANSWER_CHARS
        )
    status = turn.get("status")
    if status == "pending":  # exported while it was being answered: it ends here
        status = "interrupted"
    if status not in IMPORTED_STATUSES:
        raise ChatImportError("\"status\" must be one of {statuses}.", statuses=", ".join(IMPORTED_STATUSES))
    model = _text(turn.get("model"), "model").strip()
    if not model:
        raise ChatImportError("\"model\" must name the model that answered.")
    if len(model) > MAX_MODEL_NAME_CHARS:
        raise ChatImportError(
            "\"{field}\" is {length:,} characters long; the limit is {limit}.", field="model", length=len(model), limit=MAX_MODEL_NAME_CHARS
        )
    return prompt, answer, status, model


# --- importing --------------------------------------------------------------------------------------


def import_chats(user_id: int, document: str | bytes, *, max_message_chars: int) -> Imported:
    """Create the document's chats for `user_id`, all of them or (refused) none; no credits move."""
    chats = read_document(document, max_message_chars=max_message_chars)
    now = utcnow()
    created = []
    with transaction():
        before = queries.count_imported_turns(user_id)
        if before + sum(len(chat.turns) for chat in chats) > MAX_IMPORTED_TURNS_PER_USER:
            raise ChatImportError(
                "This account has imported {n:,} messages; an account can import at most {limit:,}.",
                n=before, limit=MAX_IMPORTED_TURNS_PER_USER,
            )
        # The sidebar lists the chats used last first, and a tie by the newer id: the document's
        # first chat (an export lists the most recently used first) is created last.
        for chat in reversed(chats):
            chat_id = queries.insert_conversation(user_id, chat.title, now)
            queries.update_chat_settings(chat_id, chat.tier, chat.system_prompt)
            queries.insert_imported_turns(chat_id, chat.turns, now)
            created.append(chat_id)
    return Imported(created[::-1], sum(len(chat.turns) for chat in chats))
