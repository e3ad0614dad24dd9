"""Loads the tier models and streams generations — the only module that imports llama_cpp.

Each tier's Llama object stays resident for the life of the process. A Llama object is not
thread-safe (concurrent use killed the process, no exception), so each tier has one lock held for
a whole stream and a bounded FIFO of waiting generations; different tiers run in parallel.
"""

from __future__ import annotations

import codecs
import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from .config import Settings, TierSettings, physical_cores
from .errors import ContextTooLongError, GenerationError, ModelUnavailableError, QueueFullError
from .models import ModelStatus, describe_models, ensure_bundled_model

WAIT_POLL_S = 0.5  # how often a queued generation re-reports its position
CLOSE_WAIT_S = 10.0


@dataclass(frozen=True)
class Waiting:
    """Yielded while other generations hold or precede this one on the same tier."""

    position: int  # 1 = next to run


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


# --- prompt formats --------------------------------------------------------------------------

Message = Mapping[str, str]


class _ChatTemplate:
    """The GGUF's own Jinja chat template, rendered with llama-cpp-python's formatter.

    This is what `create_chat_completion` does when chat_format is unset; we render and tokenize
    ourselves so history trimming counts exactly the tokens that will be evaluated.
    """

    # Google's recommended sampling for Gemma 3 instruction-tuned models.
    sampling = {"temp": 1.0, "top_k": 64, "top_p": 0.95, "min_p": 0.0, "repeat_penalty": 1.0}

    def __init__(self, llama: llama_cpp.Llama):
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        eos, bos = llama.token_eos(), llama.token_bos()
        eos_text = _token_text(vocab, eos)
        self._formatter = Jinja2ChatFormatter(
            template=llama.metadata["tokenizer.chat_template"],
            eos_token=eos_text,
            bos_token=_token_text(vocab, bos),
            stop_token_ids=[eos],
        )
        # The formatter's stop string; end-of-turn tokens themselves are caught as EOG tokens.
        self.stop = [eos_text] if eos_text else []

    def tokenize(self, llama: llama_cpp.Llama, messages: Sequence[Message]) -> list[int]:
        result = self._formatter(messages=[dict(m) for m in messages])
        return llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)


class _Transcript:
    """A plain Q/A transcript for models without a chat template (the bundled 270M base model).

    Forcing a chat template on a base model makes it loop; a short few-shot transcript at low
    temperature gets short, sensible answers, and the stop strings end each answer.
    """

    preamble = (
        "Below are questions and the answers of a helpful, knowledgeable assistant.\n\n"
        "Q: What is the largest planet in the solar system?\n"
        "A: Jupiter is the largest planet in the solar system.\n\n"
        "Q: How many days are in a week?\n"
        "A: A week has seven days.\n\n"
    )
    stop = ["\nQ:", "\nA:", "\n\n"]
    sampling = {"temp": 0.3, "top_k": 64, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.1}

    def tokenize(self, llama: llama_cpp.Llama, messages: Sequence[Message]) -> list[int]:
        parts = [self.preamble]
        for message in messages:
            if message["role"] == "user":
                parts.append(f"Q: {message['content'].strip()}\nA:")
            else:
                parts.append(f" {message['content'].strip()}\n\n")
        # special=False: text a user types like "<start_of_turn>" stays text, not a control token.
        return llama.tokenize("".join(parts).encode("utf-8"), add_bos=True, special=False)


def choose_prompt_format(llama: llama_cpp.Llama) -> _ChatTemplate | _Transcript:
    """The GGUF's own chat template, or a plain transcript for a model without one."""
    return _ChatTemplate(llama) if llama.metadata.get("tokenizer.chat_template") else _Transcript()


def sampling_for(prompt_format: _ChatTemplate | _Transcript, tier: TierSettings) -> dict[str, float]:
    """The format's recommended sampling, with the tier's temperature when set (0 = greedy)."""
    if tier.temperature is None:
        return dict(prompt_format.sampling)
    return {**prompt_format.sampling, "temp": tier.temperature}


def _token_text(vocab: Any, token: int) -> str:
    if token < 0:
        return ""
    raw = llama_cpp.llama_vocab_get_text(vocab, token)
    return raw.decode("utf-8", errors="replace") if raw else ""


def _normalize(messages: Sequence[Message]) -> list[dict[str, str]]:
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


# --- one tier's model and its queue -------------------------------------------------------------


@dataclass(eq=False)
class _Tier:
    settings: TierSettings
    status: ModelStatus
    label: str
    llama: llama_cpp.Llama | None = None
    reason: str = ""
    prompt_format: _ChatTemplate | _Transcript | None = None
    cond: threading.Condition = field(default_factory=threading.Condition)
    busy: bool = False
    waiting: collections.deque = field(default_factory=collections.deque)
    closing: threading.Event = field(default_factory=threading.Event)
    current_stop: threading.Event | None = None  # the running generation's, read by the abort callback
    abort_callback: Any = None  # the ctypes callback must stay referenced while installed

    @property
    def available(self) -> bool:
        return self.llama is not None and not self.closing.is_set()

    def stop_requested(self) -> bool:
        stop = self.current_stop
        return self.closing.is_set() or (stop is not None and stop.is_set())

    def watch_for_abort(self, on: bool) -> None:
        """Let `stop` interrupt llama_decode between graph nodes — used only during prefill.

        The callback runs Python once per graph node (~450 times a token for the 270M), which costs
        ~12% of decode speed, and decode is stopped between tokens anyway.
        """
        callback = self.abort_callback if on else llama_cpp.ggml_abort_callback()
        llama_cpp.llama_set_abort_callback(self.llama.ctx, callback, None)


class Engine:
    """The loaded tier models. Build with `Engine.load(settings)`; call `close()` when done."""

    def __init__(self, settings: Settings, tiers: dict[str, _Tier]):
        self.settings = settings
        self._tiers = tiers

    # --- loading ---

    @classmethod
    def load(cls, settings: Settings, *, log: Callable[[str], None] = print) -> Engine:
        """Plan from file headers and free RAM, then load each tier that fits, mini first.

        A tier that cannot be loaded is marked unavailable with its reason; the others still work.
        """
        tiers: dict[str, _Tier] = {}
        for status in describe_models(settings):
            tier = _Tier(settings=settings.tier(status.tier), status=status, label=status.model, reason=status.reason)
            tiers[status.tier] = tier
            if not status.loadable:
                log(f"{status.tier}: {status.model} unavailable ({status.status}) — {status.reason}")
                continue
            try:
                seconds = cls._load_tier(settings, tier)
            except Exception as exc:  # one model's failure must never take the app down
                tier.reason = f"Could not load {status.file.name}: {exc}"
                log(f"{status.tier}: {status.model} unavailable — {tier.reason}")
                continue
            log(
                f"{status.tier}: {status.model} loaded in {seconds:.1f} s "
                f"(n_ctx {tier.llama.n_ctx()}, {tier.llama.n_threads} threads) — {status.reason}"
            )
        return cls(settings, tiers)

    @staticmethod
    def _load_tier(settings: Settings, tier: _Tier) -> float:
        status = tier.status
        path = ensure_bundled_model(settings) if status.is_demo else status.file
        threads = tier.settings.n_threads or physical_cores()
        began = time.monotonic()
        llama = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=status.n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=tier.settings.n_gpu_layers,
            verbose=False,
        )
        try:
            tier.prompt_format = choose_prompt_format(llama)
        except Exception:  # e.g. a template that is not valid Jinja: free the weights we just mapped
            llama.close()
            raise

        def abort_requested(_data: Any) -> bool:
            return tier.stop_requested()

        tier.abort_callback = llama_cpp.ggml_abort_callback(abort_requested)
        tier.llama = llama
        return time.monotonic() - began

    def close(self) -> None:
        """Stop running generations, refuse new ones, and free every model."""
        for tier in self._tiers.values():
            with tier.cond:
                tier.closing.set()
                tier.cond.notify_all()
                # A running stream sees `closing` within a token; a stream its consumer has
                # suspended never touches the model again once `closing` is set.
                tier.cond.wait_for(lambda tier=tier: not tier.busy, timeout=CLOSE_WAIT_S)
                if tier.llama is not None:
                    tier.llama.close()
                    tier.llama = None

    # --- status ---

    def tiers(self) -> list[TierStatus]:
        return [
            TierStatus(
                tier=name,
                label=tier.label,
                price=tier.settings.price,
                available=tier.available,
                reason=tier.reason,
                is_demo=tier.status.is_demo,
                max_tokens=tier.settings.max_tokens,
                n_ctx=tier.llama.n_ctx() if tier.llama is not None else tier.status.n_ctx,
            )
            for name, tier in self._tiers.items()
        ]

    def is_available(self, tier: str) -> bool:
        entry = self._tiers.get(tier)
        return entry is not None and entry.available

    def _tier(self, name: str) -> _Tier:
        self.settings.tier(name)  # ConfigError for an unknown name
        return self._tiers[name]

    # --- generation ---

    def generate(
        self, tier: str, messages: Sequence[Message], *, stop: threading.Event | None = None
    ) -> Iterator[Waiting | str | GenerationResult]:
        """Stream one reply: Waiting(position)…, then text deltas, then one GenerationResult.

        ModelUnavailableError and QueueFullError are raised on the first `next()`; ContextTooLongError
        as soon as the tier is free, before any text (tokens are counted with the model's own tokenizer,
        which is not used while another stream runs). History is trimmed oldest pair first; only a
        newest message too long on its own is refused. Setting `stop` ends the stream promptly with
        finish_reason "stopped". Closing the generator early releases the model, which stays usable.
        """
        entry = self._tier(tier)
        turns = _normalize(messages)
        if not entry.available:
            raise ModelUnavailableError(
                f"The {entry.label} model is not available: {entry.reason}", detail=entry.reason
            )
        queued_at = time.monotonic()
        yield from self._acquire(entry)
        try:
            started = time.monotonic()
            if not entry.available:  # closed while we waited
                raise ModelUnavailableError(f"The {entry.label} model is shutting down.")
            tokens = self._fit(entry, turns)
            yield from self._stream(entry, tokens, stop, started, queued_ms=_ms(started - queued_at))
        finally:
            with entry.cond:
                entry.busy = False
                entry.cond.notify_all()

    def _acquire(self, entry: _Tier) -> Iterator[Waiting]:
        ticket = object()
        with entry.cond:
            if not entry.busy and not entry.waiting:
                entry.busy = True
                return
            if len(entry.waiting) >= self.settings.queue_size:
                raise QueueFullError(f"The {entry.label} model is busy; please try again in a moment.")
            entry.waiting.append(ticket)
        try:
            while True:
                with entry.cond:
                    if entry.closing.is_set():
                        raise ModelUnavailableError(f"The {entry.label} model is shutting down.")
                    if not entry.busy and entry.waiting[0] is ticket:
                        entry.waiting.popleft()
                        entry.busy = True
                        return
                    position = entry.waiting.index(ticket) + 1
                yield Waiting(position)
                with entry.cond:
                    entry.cond.wait_for(
                        lambda: entry.closing.is_set() or (not entry.busy and entry.waiting[0] is ticket),
                        timeout=WAIT_POLL_S,
                    )
        finally:
            # Abandoned (consumer closed us) or refused: give up our place so the queue moves on.
            with entry.cond:
                if ticket in entry.waiting:
                    entry.waiting.remove(ticket)
                    entry.cond.notify_all()

    def _fit(self, entry: _Tier, turns: list[dict[str, str]]) -> list[int]:
        """The prompt's tokens, dropping the oldest user/assistant pairs until reply room remains."""
        llama, max_tokens = entry.llama, entry.settings.max_tokens
        budget = llama.n_ctx() - max_tokens
        try:
            while True:
                tokens = entry.prompt_format.tokenize(llama, turns)
                if len(tokens) <= budget:
                    return tokens
                if len(turns) == 1:
                    break
                turns = turns[2:]
        except ValueError as exc:  # the template's raise_exception, or a tokenizer failure
            raise GenerationError("The conversation could not be formatted for the model.", detail=str(exc)) from exc
        content = turns[0]["content"]
        content_tokens = max(1, len(llama.tokenize(content.encode("utf-8"), add_bos=False)))
        allowed = max(0, budget - (len(tokens) - content_tokens))
        allowed_chars = allowed * len(content) // content_tokens
        raise ContextTooLongError(
            f"Your message is too long for {entry.label}: it is about {content_tokens:,} tokens and at most "
            f"{allowed:,} fit (roughly {allowed_chars:,} characters). Please shorten it.",
            detail=f"prompt {len(tokens)} tokens + max_tokens {max_tokens} > n_ctx {llama.n_ctx()}",
        )

    def _stream(
        self, entry: _Tier, tokens: list[int], stop: threading.Event | None, started: float, *, queued_ms: int
    ) -> Iterator[str | GenerationResult]:
        llama, prompt_format = entry.llama, entry.prompt_format
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        stops = prompt_format.stop
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, emitted, completion, first_token_at = "", 0, 0, None
        yielded = False  # until the first delta, leading blanks are skipped, not streamed
        finish = "length"
        entry.current_stop = stop
        stream = llama.generate(tokens, **sampling_for(prompt_format, entry.settings))
        try:
            while completion < entry.settings.max_tokens:
                if entry.stop_requested():
                    finish = "stopped"
                    break
                prefill = completion == 0
                if prefill:
                    entry.watch_for_abort(True)
                try:
                    token = next(stream)
                finally:
                    if prefill:
                        entry.watch_for_abort(False)
                if first_token_at is None:
                    first_token_at = time.monotonic()
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                completion += 1
                text += decoder.decode(llama.detokenize([token]))
                cut = _find_stop(text, stops)
                if cut is not None:
                    text, finish = text[:cut], "stop"
                    break
                if not yielded:  # answers start after "A:" with a space
                    emitted = len(text) - len(text.lstrip())
                safe = _safe_end(text, stops)
                if safe > emitted:
                    yielded = True
                    yield text[emitted:safe]
                    emitted = safe
        except RuntimeError as exc:  # llama_decode returned N; 2 means our abort callback fired
            if not entry.stop_requested():
                raise GenerationError("The model failed while generating; please try again.", detail=str(exc)) from exc
            finish = "stopped"
        except ValueError as exc:
            raise ContextTooLongError("The conversation is too long for the model.", detail=str(exc)) from exc
        finally:
            stream.close()
            entry.current_stop = None

        text = text.rstrip()  # bytes of a character cut off by the stop are dropped, not shown as "\ufffd"
        if not yielded:
            emitted = len(text) - len(text.lstrip())
        if len(text) > emitted:
            yield text[emitted:]
        now = time.monotonic()
        yield GenerationResult(
            text=text.lstrip(),
            prompt_tokens=len(tokens),
            completion_tokens=completion,
            finish_reason=finish,
            ttft_ms=_ms(first_token_at - started) if first_token_at is not None else None,
            duration_ms=_ms(now - started),
            model_label=entry.label,
            queued_ms=queued_ms,
        )


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [text.find(s) for s in stops if s and s in text]
    return min(found) if found else None


def _safe_end(text: str, stops: Sequence[str]) -> int:
    """How much of `text` can be streamed: hold back a tail that may begin a stop string,
    and trailing whitespace, which is dropped if the answer ends there."""
    end = len(text.rstrip())
    for s in stops:
        for size in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:size]):
                end = min(end, len(text) - size)
                break
    return end


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))
