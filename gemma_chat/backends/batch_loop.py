"""The worker's decode loop: continuous batching over `parallel` slots of one llama.cpp context.

Each step builds one llama_batch: every generating slot's next token, then waiting prompts' prefill
in chunks (small ones while others stream, so a long prompt never freezes them for more than one
chunk). Each request has its own sampler chain, max_tokens, stop strings and Stop; a Stop frees its
slot at the next step without touching the others. Events go out through `send` with the request's
id (`text`, then `done` or `error`), exactly as when the worker served one request at a time.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


from ..errors import ContextTooLongError, ModelError
from .answer_text import AnswerText
from .base import Sampling
from . import llama_runner as llama
from .llama_runner import N_BATCH, LlamaRunner, sampling_for
from .prompt_cache import SavedStates, Slot, common_prefix, place

# Prompt tokens per step while other slots stream: their next token waits for this chunk. With no
# one streaming, prompts fill the whole batch (N_BATCH, llama-cpp-python's n_batch: the same chunks
# as a lone Llama.generate, so one stream's greedy text is the same as raw llama-cpp-python's).
PREFILL_CHUNK_WHILE_STREAMING = 64
DECODE_FAILED = "The model failed while generating; please try again."


@dataclass(eq=False)
class Request:
    id: int
    turns: list[dict[str, str]]
    stop: threading.Event
    sampling: dict[str, float]  # llama.cpp names: temp, top_k, top_p, min_p, repeat_penalty
    max_tokens: int
    received: float
    prompt: list[int] = field(default_factory=list)
    slot: Slot | None = None
    prefilled: int = 0  # prompt tokens in the slot's KV so far (reused ones included)
    reused: int = 0  # prompt tokens found in the cache, not prefilled
    cache: str = ""  # "slot" | "ram" | "": where the reused prefix came from
    sampler: Any = None
    answer: AnswerText | None = None
    next_token: int | None = None  # sampled, to be decoded next step
    completion: int = 0
    first_token_at: float | None = None
    logits_index: int | None = None  # this step's row of logits, when it samples

    @property
    def prefilling(self) -> bool:
        return self.prefilled < len(self.prompt)

    @property
    def newest_message(self) -> str:
        return self.turns[-1]["content"] if self.turns else ""


class BatchLoop:
    def __init__(self, runner: LlamaRunner, send: Callable[..., None], *, closing: threading.Event | None = None):
        self.runner = runner
        self.ctx = runner.ctx
        self._send = send
        self._closing = closing or threading.Event()
        self.slots = [Slot(seq_id) for seq_id in range(runner.config.parallel)]
        self.saved = SavedStates(runner.config.prompt_cache_mb * 1024**2)
        self.waiting: collections.deque[Request] = collections.deque()
        self._batch = llama.new_batch()
        self._abort = llama.abort_callback(self._abort_requested)
        self._aborting = False
        self._in_batch: list[Request] = []
        self._n_vocab = llama.vocab_size(runner.llama)
        self._preamble = _preamble_length(runner)

    @property
    def running(self) -> list[Request]:
        return [slot.request for slot in self.slots if slot.request is not None]

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    def close(self) -> None:
        for request in [*self.running, *self.waiting]:
            self._free_sampler(request)
        llama.free_batch(self._batch)

    # --- requests in ---

    def submit(self, request_id: int, turns, stop: threading.Event, sampling: dict | None = None) -> None:
        asked = Sampling(**sampling) if sampling else None
        tier_max = self.runner.config.max_tokens
        request = Request(
            id=request_id, turns=turns, stop=stop,
            sampling=sampling_for(self.runner.prompt_format, self.runner.config.temperature, asked),
            max_tokens=min(asked.max_tokens, tier_max) if asked and asked.max_tokens else tier_max,
            received=time.monotonic(),
        )
        try:
            request.prompt = self.runner.fit(turns)
        except ModelError as exc:
            kind = "context" if isinstance(exc, ContextTooLongError) else "generation"
            self._send(
                "error", id=request_id, kind=kind, message=exc.message, template=exc.template, params=exc.params,
                detail=exc.detail,
            )
            return
        self.waiting.append(request)

    # --- one step ---

    def step(self) -> None:
        """Admit waiting requests, end stopped ones, then decode one batch and sample from it."""
        self._end_stopped()
        self._admit()
        in_batch, prefill = self._fill_batch()
        if not in_batch:
            return
        self._in_batch = in_batch
        self._watch_for_abort(prefill)
        try:
            self.runner.decode(self._batch, in_batch)
        except RuntimeError as exc:
            if self._abort_requested():  # aborted: every request in it was stopped (or the worker is)
                for request in in_batch:
                    self._forget_cells(request)
                    self._finish(request, "stopped")
            else:  # the whole batch failed: its requests end, the others go on
                for request in in_batch:
                    self._fail(request, exc)
            return
        finally:
            self._watch_for_abort(False)
            self._in_batch = []
        for request in in_batch:
            self._advance(request)

    def _abort_requested(self) -> bool:
        """Abort the running llama_decode? Only when it serves no one: the worker is closing, or
        every request in the batch was stopped (a lone long prompt's Stop must not wait for it)."""
        return self._closing.is_set() or (bool(self._in_batch) and all(r.stop.is_set() for r in self._in_batch))

    def _watch_for_abort(self, on: bool) -> None:
        """Install the abort check only for steps with prefill: the callback runs Python once per
        graph node, ~12% of decode speed, and a decode-only step is short anyway."""
        if on != self._aborting:
            llama.set_abort_callback(self.ctx, self._abort if on else None)
            self._aborting = on

    def _end_stopped(self) -> None:
        for request in [r for r in self.waiting if r.stop.is_set()]:
            self.waiting.remove(request)
            self._finish(request, "stopped")
        for request in self.running:
            if request.stop.is_set():
                self._finish(request, "stopped")

    def _admit(self) -> None:
        while self.waiting:
            free = [slot for slot in self.slots if slot.request is None]
            if not free:
                return
            request = self.waiting.popleft()
            placement = place(request.prompt, free, self.saved, self._preamble)
            slot = placement.slot
            # What the slot loses: its tail beyond the reused prefix, or all of it when another
            # conversation is restored over it. A conversation would lose that: keep it in RAM.
            lost = slot.cached if placement.restore is not None else slot.cached[placement.reuse:]
            if self.saved.wants(lost):
                self.saved.add(list(slot.cached), llama.save_sequence(self.ctx, slot.seq_id))
            reuse, hit = placement.reuse, placement.hit
            if placement.restore is not None:
                if llama.restore_sequence(self.ctx, slot.seq_id, placement.restore.data):
                    slot.cached = placement.restore.tokens
                else:
                    slot.cached, reuse, hit = [], 0, ""
            if not llama.keep_prefix(self.ctx, slot.seq_id, reuse):
                llama.clear_sequence(self.ctx, slot.seq_id)
                reuse, hit = 0, ""
            slot.cached = slot.cached[:reuse]
            slot.request, request.slot = request, slot
            request.prefilled = request.reused = reuse
            request.cache = hit if reuse else ""
            request.sampler = llama.sampler_chain(request.sampling, self._n_vocab)
            request.answer = AnswerText(self.runner.prompt_format.stop)

    def _fill_batch(self) -> tuple[list[Request], bool]:
        """The step's requests, and whether any prefill is among them."""
        batch, n = self._batch, 0
        in_batch: list[Request] = []

        def add(request: Request, token: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = len(request.slot.cached)
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = request.slot.seq_id
            batch.logits[n] = logits
            request.slot.cached.append(token)
            if logits:
                request.logits_index = n
            n += 1

        streaming = [r for r in self.running if not r.prefilling]
        for request in streaming:
            request.logits_index = None
            add(request, request.next_token, True)
            in_batch.append(request)
        budget = PREFILL_CHUNK_WHILE_STREAMING if streaming else N_BATCH
        for request in sorted((r for r in self.running if r.prefilling), key=lambda r: r.received):
            room = min(budget, N_BATCH - n)
            if room <= 0:
                break
            budget -= room
            request.logits_index = None
            end = min(len(request.prompt), request.prefilled + room)
            for position in range(request.prefilled, end):
                add(request, request.prompt[position], position == len(request.prompt) - 1)
            request.prefilled = end
            in_batch.append(request)
        batch.n_tokens = n
        return in_batch, len(in_batch) > len(streaming)

    # --- after the decode ---

    def _advance(self, request: Request) -> None:
        if request.logits_index is None:  # a prefill chunk that is not the prompt's last
            return
        token = llama.sample(request.sampler, self.ctx, request.logits_index)
        if request.first_token_at is None:
            request.first_token_at = time.monotonic()
        if self.runner.is_end_of_generation(token):
            self._finish(request, "stop")
            return
        request.completion += 1
        delta = request.answer.add(self.runner.token_piece(token))
        if request.answer.stopped:
            self._finish(request, "stop")
            return
        if delta:
            self._text(request, delta)
        if request.completion >= request.max_tokens:
            self._finish(request, "length")
        else:
            request.next_token = token

    def _text(self, request: Request, text: str) -> None:
        self._send("text", id=request.id, text=text)
        self.runner.on_text(request, text)

    def _finish(self, request: Request, reason: str) -> None:
        last, text = request.answer.finish() if request.answer is not None else ("", "")
        if last:
            self._text(request, last)
        started, now = request.received, time.monotonic()
        ttft = None if request.first_token_at is None else int(round((request.first_token_at - started) * 1000))
        self._send(
            "done", id=request.id, text=text, prompt_tokens=len(request.prompt),
            completion_tokens=request.completion, finish_reason=reason, ttft_ms=ttft,
            duration_ms=int(round((now - started) * 1000)),
            cache=request.cache, prompt_tokens_reused=request.reused,
            prompt_tokens_prefilled=max(0, min(request.prefilled, len(request.prompt)) - request.reused),
        )
        self._release(request)

    def _fail(self, request: Request, exc: Exception) -> None:
        self._send("error", id=request.id, kind="generation", message=DECODE_FAILED, detail=str(exc))
        self._forget_cells(request)
        self._release(request)

    def _forget_cells(self, request: Request) -> None:
        """After a failed or aborted decode the sequence's cells are in an unknown state: drop them."""
        if request.slot is not None:
            llama.clear_sequence(self.ctx, request.slot.seq_id)
            request.slot.cached = []

    def fail_all(self, exc: Exception) -> None:
        """An unexpected error in a step: every request in a slot ends with it."""
        for request in self.running:
            self._send("error", id=request.id, kind="generation", message="The model failed to answer.", detail=repr(exc))
            self._forget_cells(request)
            self._release(request)

    def _release(self, request: Request) -> None:
        slot = request.slot
        if slot is not None:  # the last sampled token was never decoded: `cached` rightly lacks it
            slot.request, slot.used_at = None, time.monotonic()
            request.slot = None
        self._free_sampler(request)

    @staticmethod
    def _free_sampler(request: Request) -> None:
        if request.sampler is not None:
            llama.free_sampler(request.sampler)
            request.sampler = None


def _preamble_length(runner: LlamaRunner) -> int:
    """The tokens every prompt of the runner's format starts with (the transcript's few-shot
    preamble, a chat template's first tokens): two one-word conversations share exactly those."""
    one, other = (runner.fit([{"role": "user", "content": word}]) for word in ("Hello", "Goodbye"))
    return common_prefix(one, other)
