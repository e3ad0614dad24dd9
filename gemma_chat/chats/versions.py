"""The versions of a chat's turn (issue 19): a turn regenerated or edited keeps the answers it
replaced, to page through (‹ 1/2 ›).

Nothing is stored for it: a replacement names the turn it replaced (interactions.replaces_id), and
those names, walked back from the turn the chat shows, are its versions. A version is an answer that
was charged for (ok or stopped, with text): a replacement that failed or was refused stays hidden as
before, and a refused or failed turn that was sent again is no version either. Every row stays on
record with its charge (History and the statement list each one); paging only reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import conversations
from ..store import conversation_queries as queries
from ..store.conversation_queries import Turn

MAX_CHOSEN = 200  # versions chosen on one page: more than a chat shows at once, fewer than a forged list


@dataclass(frozen=True)
class ShownTurn:
    """A turn of the chat as the page shows it: the version on screen, among all of the turn's."""

    turn: Turn
    version_ids: tuple[int, ...]  # oldest first, the chat's current turn last; one when it replaced none

    @property
    def position(self) -> int:
        """1 for the oldest version, len(version_ids) for the current one."""
        return self.version_ids.index(self.turn.id) + 1

    def neighbour(self, step: int) -> int | None:
        """The id of the version `step` away (-1: the earlier one, 1: the later one); None past either end."""
        index = self.position - 1 + step
        return self.version_ids[index] if 0 <= index < len(self.version_ids) else None


def _versions_of(replacements: dict[int, tuple[int | None, bool]], turn_id: int) -> tuple[int, ...]:
    """`turn_id` and the answered turns it replaced, one through another, oldest first."""
    ids, seen = [turn_id], {turn_id}
    replaced = replacements.get(turn_id, (None, False))[0]
    while replaced is not None and replaced not in seen and replaced in replacements:
        seen.add(replaced)
        next_replaced, answered = replacements[replaced]
        if answered:
            ids.append(replaced)
        replaced = next_replaced
    return tuple(reversed(ids))


def shown_turns(user_id: int, conversation_id, chosen=()) -> list[ShownTurn]:
    """The chat's turns, oldest first (as conversations.conversation_turns), each at the version of it
    that `chosen` (version ids) names last, else at its current one. Ids of no version are ignored."""
    conversation = conversations.get_conversation(user_id, conversation_id)
    turns = conversations.conversation_turns(user_id, conversation.id)
    replacements = queries.select_replacements(conversation.id)
    # Imported turns have ids of their own table (they may equal an interaction's) and no versions.
    versions = {turn.id: _versions_of(replacements, turn.id) for turn in turns if not turn.imported}
    owner = {version: turn_id for turn_id, ids in versions.items() for version in ids}
    picked: dict[int, int] = {}
    for version in list(chosen)[-MAX_CHOSEN:]:
        if version in owner:
            picked[owner[version]] = version
    earlier = {
        row.id: row
        for row in queries.select_turns(conversation.id, [v for t, v in picked.items() if v != t])
    }
    return [
        ShownTurn(turn, (turn.id,)) if turn.imported else ShownTurn(earlier.get(picked.get(turn.id), turn), versions[turn.id])
        for turn in turns
    ]
