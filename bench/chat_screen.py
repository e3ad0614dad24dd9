"""The chat screen's server side at the sizes issue 19 names, through the UI's own callbacks:

- opening a chat of 200 turns from the sidebar (`chat_request("open:ID")`: the turns, the bubbles
  made safe, the sidebar list again, and Gradio's Chatbot postprocess): target <= 150 ms;
- the sidebar's first screen at 1,000 chats (`search_chats("")`: the list as HTML): target <= 100 ms;
- typing in Search chats at 1,000 chats (each prefix of a few words, as `.input` sends them):
  target p95 <= 50 ms.

A section of the bench (`python -m bench --only chat_screen`, about a minute; `--quick` makes fewer
passes over the same data), and still runnable alone: `python -m bench.chat_screen [--work-dir DIR]`
prints the figures as JSON. It writes a fresh SQLite database of one user with 1,000 chats of 3
turns (the first of 200), with the schema the app migrates to. Timings, not asserts: a loaded
machine is slower.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from .common import Options, now, summary_ms

CHATS = 1_000
LONG_CHAT_TURNS = 200
TURNS_PER_CHAT = 3
ROUNDS, QUICK_ROUNDS = 40, 8  # opens of the long chat (and sidebar renders); searches are 5x as many phrases
TARGETS = (  # issue 19's, each on the p95: (key of the figures, goal in ms, what is timed)
    ("open_200_turn_chat_ms", 150, "open a chat of 200 turns from the sidebar, server side"),
    ("sidebar_first_screen_ms", 100, "the sidebar's first screen"),
    ("search_as_typed_ms", 50, "Search chats as typed"),
)
WORDS = "river copper meadow lantern harbour quartz falcon orchard glacier pepper cobalt thistle".split()


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def fill(user_id: int, rng: random.Random) -> int:
    """1,000 chats, oldest first; returns the long chat's id. Rows written as a turn writes them."""
    from gemma_chat.store.db import database, transaction, utcnow

    started = utcnow()
    long_chat = None
    with transaction():
        for n in range(CHATS):
            turns = LONG_CHAT_TURNS if n == 0 else TURNS_PER_CHAT
            title = _sentence(rng, 4)[:60]
            created = str(started)
            chat_id = database.execute_sql(
                "INSERT INTO conversations (user_id, title, created_at, updated_at, tier) VALUES (?, ?, ?, ?, 'mini') RETURNING id",
                (user_id, title, created, created),
            ).fetchone()[0]
            long_chat = long_chat or chat_id
            for t in range(turns):
                prompt = _sentence(rng, 12)
                answer = "**" + _sentence(rng, 8) + "**\n\n" + " ".join(_sentence(rng, 10) for _ in range(6))
                database.execute_sql(
                    "INSERT INTO interactions (request_id, user_id, tier, model_name, prompt, answer, status, created_at,"
                    " finished_at, credits_charged, completion_tokens, duration_ms, conversation_id)"
                    " VALUES (?, ?, 'mini', 'Gemma 3 1B', ?, ?, 'ok', ?, ?, 1, 80, 2000, ?)",
                    (f"b{n}-{t}", user_id, prompt, answer, created, created, chat_id),
                )
    return long_chat


def measure_chat_screen(options: Options) -> dict:
    """The bench section: the figures of `run` on a database in the bench's work dir."""
    directory = options.work_dir / "chat_screen"
    directory.mkdir(parents=True, exist_ok=True)
    return run(directory, QUICK_ROUNDS if options.quick else ROUNDS)


def run(work_dir: Path, rounds: int = ROUNDS) -> dict:
    import dataclasses

    import gradio as gr

    from gemma_chat.accounts import auth, sessions
    from gemma_chat.config import load_settings
    from gemma_chat.store import db
    from gemma_chat.ui import ChatApp
    from gemma_chat.ui.common import SESSION_COOKIE

    settings = dataclasses.replace(load_settings(data_dir=str(work_dir)), bcrypt_rounds=4)
    db.open_database(work_dir / "gemma_chat.db")
    try:
        user = auth.register_user(settings, "bench", "long enough pw")
        token = sessions.create_session(settings, user.id)
        long_chat = fill(user.id, random.Random(19))

        class Engine:  # the tiers the picker lists; nothing generates here
            def tiers(self):
                return []

        app = ChatApp(settings, Engine())
        from fastapi import Request

        scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "query_string": b"",
                 "headers": [(b"cookie", f"{SESSION_COOKIE}={token}".encode())]}
        request = gr.Request(request=Request(scope))
        chatbot = gr.Chatbot()

        opened, listed, searched = [], [], []
        for n in range(rounds):
            began = now()
            shown = app.chat_request(request, f"open:{long_chat}:{n}", "")
            chatbot.postprocess(shown["chatbot"])
            opened.append(now() - began)
            assert len(shown["chatbot"]) == 2 * LONG_CHAT_TURNS
            began = now()
            app.search_chats(request, "")
            listed.append(now() - began)
        rng = random.Random(7)
        for _ in range(rounds * 5):
            phrase = " ".join(rng.choice(WORDS) for _ in range(2))
            for end in range(3, len(phrase) + 1, 3):  # what arrives while someone types it
                began = now()
                app.search_chats(request, phrase[:end])
                searched.append(now() - began)
        return {
            "chats": CHATS, "long_chat_turns": LONG_CHAT_TURNS,
            "open_200_turn_chat_ms": summary_ms(opened), "sidebar_first_screen_ms": summary_ms(listed),
            "search_as_typed_ms": summary_ms(searched), "targets_p95_ms": {key: goal for key, goal, _ in TARGETS},
        }
    finally:
        db.close_database()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        print(json.dumps(run(args.work_dir, args.rounds), indent=2))
    else:
        with tempfile.TemporaryDirectory() as directory:
            print(json.dumps(run(Path(directory), args.rounds), indent=2))


if __name__ == "__main__":
    main()
