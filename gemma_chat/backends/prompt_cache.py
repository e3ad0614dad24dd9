"""The worker's prompt cache: which slot a new prompt goes to, and evicted slots' KV state in RAM.

A slot is one llama.cpp sequence; what its KV cells hold is the list of tokens it last decoded.
A turn goes to the free slot that already holds the longest prefix of its prompt (the same
conversation's previous turn), else to the least recently used one. Whatever a slot would lose
(another conversation, or more than a few tokens of this one) is first saved to host RAM
(llama_state_seq_get_data), so that conversation can come back later without a prefill.
Like llama.cpp's server (tools/server: slot selection by longest common prefix, a RAM prompt cache).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Sequence


# A slot "holds" a conversation when the new prompt keeps more than the prompt format's preamble
# (which every prompt shares: alone it must not pull a turn into another conversation's slot) and
# at least this share of the slot's cached tokens.
HIT_SHARE = 0.5
MIN_SAVED_TOKENS = 32  # shorter sequences are cheaper to prefill again than to keep


@dataclass
class Slot:
    seq_id: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV this sequence holds, from position 0
    used_at: float = 0.0  # when its last request ended (0: never used)
    request: object = None  # the request decoding in it, None when free


@dataclass
class SavedState:
    tokens: list[int]
    data: bytes


@dataclass(frozen=True)
class Placement:
    slot: Slot
    restore: SavedState | None  # put this saved sequence into the slot first
    reuse: int  # prompt tokens already in the slot's KV (after any restore): not prefilled again
    hit: str  # "slot" (the conversation was still in its slot), "ram" (restored), "" (a miss)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _holds(cached: Sequence[int], prefix: int, preamble: int) -> bool:
    return prefix > preamble and prefix >= HIT_SHARE * len(cached)


class SavedStates:
    """Sequences evicted from their slots, newest last; the oldest are dropped beyond `budget_bytes`."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._states: collections.OrderedDict[int, SavedState] = collections.OrderedDict()
        self._next_key = 0

    @property
    def bytes_used(self) -> int:
        return sum(len(s.data) for s in self._states.values())

    def __len__(self) -> int:
        return len(self._states)

    def wants(self, tokens: Sequence[int]) -> bool:
        return self.budget_bytes > 0 and len(tokens) >= MIN_SAVED_TOKENS

    def add(self, tokens: list[int], data: bytes) -> None:
        if len(data) > self.budget_bytes:
            return
        for key, state in list(self._states.items()):  # an older copy of the same conversation
            if common_prefix(state.tokens, tokens) == len(state.tokens):
                del self._states[key]
        self._states[self._next_key] = SavedState(tokens, data)
        self._next_key += 1
        while self.bytes_used > self.budget_bytes:
            self._states.popitem(last=False)

    def best(self, prompt: Sequence[int], preamble: int = 0) -> tuple[int | None, int]:
        """The saved conversation holding the longest prefix of `prompt`: (key, prefix) or (None, 0)."""
        found, longest = None, 0
        for key, state in self._states.items():
            prefix = common_prefix(state.tokens, prompt)
            if _holds(state.tokens, prefix, preamble) and prefix > longest:
                found, longest = key, prefix
        return found, longest

    def take(self, key: int) -> SavedState:
        return self._states.pop(key)


def place(prompt: Sequence[int], free: Sequence[Slot], saved: SavedStates, preamble: int = 0) -> Placement:
    """Which free slot serves `prompt`, and from what cached state (see the module's docstring).
    `preamble`: how many tokens every prompt of this format starts with."""
    holding = [(common_prefix(s.cached, prompt), s) for s in free]
    holding = [(prefix, s) for prefix, s in holding if _holds(s.cached, prefix, preamble)]
    best_prefix, best_slot = max(holding, key=lambda pair: (pair[0], pair[1].used_at), default=(0, None))
    key, saved_prefix = saved.best(prompt, preamble)
    last = len(prompt) - 1  # the last prompt token is always decoded: its logits give the first token
    if key is not None and saved_prefix > best_prefix:
        slot = min(free, key=lambda s: s.used_at)
        return Placement(slot, saved.take(key), min(saved_prefix, last), "ram")
    if best_slot is not None:
        return Placement(best_slot, None, min(best_prefix, last), "slot")
    slot = min(free, key=lambda s: s.used_at)
    return Placement(slot, None, min(common_prefix(slot.cached, prompt), last), "")
