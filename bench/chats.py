"""Chats at scale (issue 11): the chat list and opening a long chat, on the queries section's database.

bench/queries.py writes 10,000 users and 1,000,000 turns without conversations; this module groups
each user's turns into chats the way people use the app: a user with many turns has about a
thousand chats (MAX_CHATS), a light user one chat per turn. The heaviest user's first chat is
made LONG_CHAT_TURNS long, so opening it is the worst case the issue names. Then, through the
app's own functions:

- the Chats list (`conversations.list_conversations`) for the users with the most chats: mostly
  page 1, some last and random pages, some with a search over titles;
- opening the long chat as the UI does on a reload or a click: its turns, the bubbles (markup made
  safe, footers) and Gradio's own Chatbot postprocess, i.e. everything the server does before the
  answer leaves.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from .common import Options, now, summary_ms

MAX_CHATS = 1_000
LONG_CHAT_TURNS = 200
LIST_CALLS, QUICK_LIST_CALLS = 1_000, 200
OPEN_CALLS, QUICK_OPEN_CALLS = 30, 5
HEAVY_USERS = 50


def add_conversations(path: Path) -> dict:
    """Give every turn of the generated database a chat; returns what was written."""
    started = now()
    connection = sqlite3.connect(str(path), isolation_level=None)
    try:
        connection.executescript("PRAGMA synchronous = off; PRAGMA cache_size = -1000000;")
        rows = connection.execute(
            "SELECT id, user_id, prompt, created_at, status FROM interactions ORDER BY user_id, id"
        ).fetchall()
        counts: dict[int, int] = {}
        for _, user, *_ in rows:
            counts[user] = counts.get(user, 0) + 1
        heaviest = max(counts, key=counts.get)

        connection.execute("BEGIN")
        assignments, chat_of, seen = [], {}, {}
        chats = []
        long_shown = long_end = 0  # the long chat: LONG_CHAT_TURNS turns a reader sees (refused ones too, since issue 19)
        for interaction_id, user, prompt, created, status in rows:
            index = seen.get(user, 0)
            seen[user] = index + 1
            per_chat = max(1, -(-counts[user] // MAX_CHATS))
            if user == heaviest:  # its first chat is the long one, the rest as for anyone
                if long_shown < LONG_CHAT_TURNS:
                    chat, long_end = 0, index + 1
                    long_shown += 1
                else:
                    chat = 1 + (index - long_end) // per_chat
            else:
                chat = index // per_chat
            key = (user, chat)
            if key not in chat_of:
                chat_of[key] = len(chats) + 1
                chats.append([chat_of[key], user, prompt[:60], created, created])
            else:
                chats[chat_of[key] - 1][4] = created  # updated_at: the chat's last turn
            assignments.append((chat_of[key], interaction_id))
        connection.executemany(
            "INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?)", chats
        )
        connection.executemany("UPDATE interactions SET conversation_id = ? WHERE id = ?", assignments)
        connection.execute("COMMIT")
    finally:
        connection.close()
    chats_per_user: dict[int, int] = {}
    for _, user, *_ in chats:
        chats_per_user[user] = chats_per_user.get(user, 0) + 1
    return {
        "conversations": len(chats),
        "most_chats_per_user": max(chats_per_user.values()),
        "users_with_1000_chats": sum(1 for n in chats_per_user.values() if n >= MAX_CHATS),
        "long_chat": {"user_id": heaviest, "conversation_id": chat_of[(heaviest, 0)], "turns": LONG_CHAT_TURNS},
        "chats_per_user": chats_per_user,
        "generate_s": round(now() - started, 2),
    }


def measure_chats(options: Options, dataset: dict) -> dict:
    """Time the Chats list and opening the long chat; the database is open (gemma_chat.db)."""
    import gradio as gr

    from gemma_chat.chats import conversations, versions
    from gemma_chat.ui import chat_messages

    chats_per_user = dataset["chats_per_user"]
    heavy = sorted(chats_per_user, key=chats_per_user.get, reverse=True)[:HEAVY_USERS]
    rng = random.Random(11)
    page_size = 20
    first, deeper, searched = [], [], []
    for _ in range(QUICK_LIST_CALLS if options.quick else LIST_CALLS):
        user = rng.choice(heavy)
        pages = max(1, -(-chats_per_user[user] // page_size))
        roll = rng.random()
        page = 1 if roll < 0.8 else (pages if roll < 0.9 else rng.randint(1, pages))
        search = rng.choice(["river", "copper meadow", "nothing like this"]) if rng.random() < 0.05 else None
        began = now()
        result = conversations.list_conversations(user, page, page_size, search)
        elapsed = now() - began
        (searched if search else first if page == 1 else deeper).append(elapsed)
        assert search or result.total == chats_per_user[user]

    long_chat = dataset["long_chat"]
    chatbot = gr.Chatbot()
    opened, turns_seen = [], 0
    for _ in range(QUICK_OPEN_CALLS if options.quick else OPEN_CALLS):
        began = now()
        shown = versions.shown_turns(long_chat["user_id"], long_chat["conversation_id"])  # as the chat screen opens it
        messages = chat_messages(shown)
        conversations.context_of([each.turn for each in shown])
        chatbot.postprocess(messages)
        opened.append(now() - began)
        turns_seen = len(shown)
    browsing = first + deeper
    return {
        "dataset": {k: v for k, v in dataset.items() if k != "chats_per_user"},
        "list": {
            "page_size": page_size,
            "users": len(heavy),
            "chats_of_those_users_min": min(chats_per_user[u] for u in heavy),
            "all": summary_ms(browsing),
            "first_page": summary_ms(first),
            "deeper_pages": summary_ms(deeper),
            "search": summary_ms(searched),
        },
        "open_long_chat": {"turns": turns_seen, **summary_ms(opened)},
    }
