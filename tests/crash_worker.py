"""Run by test_crash.py as a subprocess that gets SIGKILLed: chat-turn-shaped ledger cycles forever.

After each commit it appends a line to a journal (flushed and fsynced), so the parent knows a
lower bound of what was committed: at most one more operation can be in the database.
"""

import os
import sys
from pathlib import Path

from gemma_chat.billing import ledger
from gemma_chat.chats import interactions
from gemma_chat.chats.interactions import TurnOutcome
from gemma_chat.store import db


def main(db_path: str, journal_path: str, user_id: int) -> None:
    db.open_database(Path(db_path))
    with open(journal_path, "a", buffering=1) as journal:

        def note(line: str) -> None:
            journal.write(line + "\n")
            journal.flush()
            os.fsync(journal.fileno())

        turn = 0
        while True:
            turn += 1
            ledger.top_up(user_id, 2, maximum=1000)
            note("topup 2")
            request_id = ledger.new_request_id()
            with db.transaction():
                ledger.hold_credits(user_id, 1, request_id)
                interactions.start_interaction(request_id, user_id, "mini", "crash test", f"turn {turn}")
            if turn % 3 == 0:
                with db.transaction():
                    ledger.release_hold(request_id, "failed")
                    interactions.finish_interaction(request_id, TurnOutcome(status="error"))
                note("released")
            else:
                with db.transaction():
                    ledger.capture_hold(request_id)
                    interactions.finish_interaction(request_id, TurnOutcome(status="ok", answer="a", credits_charged=1))
                note("charge 1")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
