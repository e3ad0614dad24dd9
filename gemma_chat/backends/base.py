"""What every model backend streams and reports, and the per-tier queue they share.

A backend serves one tier: `local` (a supervised llama.cpp worker process) or `openai` (any
OpenAI-compatible server). Both yield Waiting(position)…, then text deltas, then one
GenerationResult, and raise the typed errors of gemma_chat.errors — so the chat turn never knows
which one it is talking to. Nothing here imports llama_cpp or gradio.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Protocol, Sequence

from ..errors import ModelUnavailableError, QueueFullError

WAIT_POLL_S = 0.5  # how often a queued generation re-reports its position

Message = Mapping[str, str]


class ModelPlan(Protocol):
    """What a local tier needs of the start-up plan (inference/model_files.ModelStatus is one)."""

    model: str  # the label users see
    file: Path
    reason: str
    n_ctx: int
    slots: int
    is_demo: bool


@dataclass(frozen=True)
class Waiting:
    """Yielded while other generations hold or precede this one on the same tier."""

    position: int  # 1 = next to run
    restarting: bool = False  # the tier's model is being restarted after a crash


@dataclass(frozen=True)
class GenerationResult:
    text: str  # exactly the concatenated text deltas that were streamed
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length" | "stopped"
    ttft_ms: int | None  # from the start of work (after any queueing) to the first token; None if none
    duration_ms: int  # from the start of work to the end
    model_label: str
    queued_ms: int = 0
    # The local worker's prompt cache: where the reused prefix came from ("slot": still in the
    # conversation's slot, "ram": restored from RAM, "": a miss) and how many prompt tokens were
    # reused rather than prefilled.
    cache: str = ""
    prompt_tokens_reused: int = 0


@dataclass(frozen=True)
class Sampling:
    """One request's sampling, where it differs from the tier's: None keeps the tier's setting.

    The /v1 API sends OpenAI's `temperature` and `top_p`; the chat window sends none.
    """

    temperature: float | None = None  # 0 = greedy
    top_p: float | None = None
    max_tokens: int | None = None  # model tokens, at most the tier's max_tokens (the /v1 API's)

    def as_dict(self) -> dict[str, float]:
        """The fields that are set: what travels to the worker and to a remote server."""
        fields = (("temperature", self.temperature), ("top_p", self.top_p), ("max_tokens", self.max_tokens))
        return {name: value for name, value in fields if value is not None}


@dataclass(frozen=True)
class TierStatus:
    tier: str
    label: str
    price: int
    available: bool
    reason: str
    is_demo: bool
    max_tokens: int
    n_ctx: int
    backend: str = "local"  # local | openai
    state: str = ""  # loading | ready | restarting | failed | unreachable (free text for the admin view)
    slots: int = 1  # generations running at once (a local worker's batch slots)
    # A local worker's prompt cache since the app started (for the admin's model performance view):
    # answers, how many found their prefix cached (in their slot or in RAM), prompt tokens reused / read.
    answers: int = 0
    cache_hits: int = 0
    prompt_tokens_reused: int = 0
    prompt_tokens_prefilled: int = 0


@dataclass(frozen=True)
class TierLoad:
    """How busy a tier is now, for /metrics: generations running, waiting, its slots, its restarts."""

    running: int
    waiting: int
    slots: int
    restarts: int = 0


class Backend(Protocol):
    """One tier's model, wherever it runs."""

    def status(self) -> TierStatus: ...

    def load(self) -> TierLoad: ...

    def wait_until_loaded(self, timeout: float) -> None: ...

    def generate(
        self, messages: Sequence[Message], *, stop: threading.Event | None = None, sampling: Sampling | None = None
    ) -> Iterator[Waiting | str | GenerationResult]: ...

    def restart(self) -> None: ...

    def close(self) -> None: ...


def normalize_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Alternating user/assistant turns ending with the user's message, as chat templates demand.

    Empty turns (e.g. a reply stopped before its first token) are dropped and consecutive
    turns of one role merged, so a stored history never makes the template raise.
    """
    turns: list[dict[str, str]] = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant") or not isinstance(content, str):
            raise ValueError(f"messages must be user/assistant dicts with text content, got {message!r}")
        if not content.strip():
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + content
        elif turns or role == "user":
            turns.append({"role": role, "content": content})
    if not turns or turns[-1]["role"] != "user":
        raise ValueError("messages must end with the user's new message")
    return turns


class TierQueue:
    """`slots` generations run at once on a tier; up to `max_waiting` more wait in FIFO order.

    `acquire` yields Waiting(position) while queued and returns once this caller holds a slot;
    the caller must call `release()` exactly once after that. A caller that abandons the wait
    (its generator is closed) gives up its place so the queue moves on.
    """

    def __init__(self, label: str, *, slots: int, max_waiting: int, restarting: Callable[[], bool] = lambda: False):
        self.label = label
        self.slots = slots
        self.max_waiting = max_waiting
        self._restarting = restarting
        self._cond = threading.Condition()
        self._running = 0
        self._waiting: collections.deque = collections.deque()
        self._closing = False

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _free(self) -> bool:
        return self._running < self.slots

    def acquire(self) -> Iterator[Waiting]:
        ticket = object()
        with self._cond:
            if self._closing:
                raise ModelUnavailableError("The {label} model is shutting down.", label=self.label)
            if self._free() and not self._waiting:
                self._running += 1
                return
            if len(self._waiting) >= self.max_waiting:
                raise QueueFullError("The {label} model is busy; please try again in a moment.", label=self.label)
            self._waiting.append(ticket)
        try:
            while True:
                with self._cond:
                    if self._closing:
                        raise ModelUnavailableError("The {label} model is shutting down.", label=self.label)
                    if self._free() and self._waiting[0] is ticket:
                        self._waiting.popleft()
                        self._running += 1
                        return
                    position = self._waiting.index(ticket) + 1
                yield Waiting(position, restarting=self._restarting())
                with self._cond:
                    self._cond.wait_for(
                        lambda: self._closing or (self._free() and self._waiting[0] is ticket), timeout=WAIT_POLL_S
                    )
        finally:
            with self._cond:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                    self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def close(self, timeout: float) -> None:
        """Refuse new work, wake the waiters, and wait up to `timeout` for running work to end."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._running == 0, timeout=timeout)


def stop_prefix_length(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of `text` could be the start of a stop string: they wait
    for the next piece before they are streamed."""
    longest = 0
    for s in stops:
        for size in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:size]):
                longest = max(longest, size)
                break
    return longest


def ms_since(start: float) -> int:
    return int(round((time.monotonic() - start) * 1000))
