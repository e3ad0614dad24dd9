"""One tier's llama.cpp model, inside its worker process — the only module that imports llama_cpp.

Loads the GGUF, formats and trims the conversation with the model's own tokenizer, and streams one
generation at a time. A native fault here kills only the worker; backends/local.py sees it and
restarts the worker. Nothing here knows about processes or pipes (backends/worker.py does).
"""

from __future__ import annotations

import codecs
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from ..errors import ContextTooLongError, GenerationError
from .base import GenerationResult, Message, Sampling, ms_since, stop_prefix_length
from .cpu_features import simulating_amx_crash
from .prompts import TRANSCRIPT_SAMPLING, TRANSCRIPT_STOP, transcript_prompt


@dataclass(frozen=True)
class RunnerConfig:
    """What the worker needs to load one tier: sent by the app as the worker's first message."""

    model_path: str
    label: str
    n_ctx: int
    n_threads: int
    n_gpu_layers: int
    max_tokens: int
    temperature: float | None
    extra_buffers: bool  # llama.cpp's extra CPU buffer types (AMX, …): they crash some CPUs


# --- prompt formats --------------------------------------------------------------------------


class ChatTemplate:
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


class Transcript:
    """A plain Q/A transcript for models without a chat template (the bundled 270M base model).

    Forcing a chat template on a base model makes it loop; a short few-shot transcript at low
    temperature gets short, sensible answers, and the stop strings end each answer.
    """

    stop = TRANSCRIPT_STOP
    sampling = TRANSCRIPT_SAMPLING

    def tokenize(self, llama: llama_cpp.Llama, messages: Sequence[Message]) -> list[int]:
        # special=False: text a user types like "<start_of_turn>" stays text, not a control token.
        return llama.tokenize(transcript_prompt(messages).encode("utf-8"), add_bos=True, special=False)


def choose_prompt_format(llama: llama_cpp.Llama) -> ChatTemplate | Transcript:
    """The GGUF's own chat template, or a plain transcript for a model without one."""
    return ChatTemplate(llama) if llama.metadata.get("tokenizer.chat_template") else Transcript()


def sampling_for(
    prompt_format: ChatTemplate | Transcript, temperature: float | None, request: Sampling | None = None
) -> dict[str, float]:
    """llama.cpp's sampling arguments: the format's recommended ones, then the tier's temperature
    when set (0 = greedy), then what this request asked for (the /v1 API's temperature and top_p)."""
    sampling = dict(prompt_format.sampling)
    if temperature is not None:
        sampling["temp"] = temperature
    if request is not None and request.temperature is not None:
        sampling["temp"] = request.temperature
    if request is not None and request.top_p is not None:
        sampling["top_p"] = request.top_p
    return sampling


def _token_text(vocab: Any, token: int) -> str:
    if token < 0:
        return ""
    raw = llama_cpp.llama_vocab_get_text(vocab, token)
    return raw.decode("utf-8", errors="replace") if raw else ""


# --- loading ---------------------------------------------------------------------------------


def set_extra_buffers(enabled: bool) -> bool:
    """Turn llama.cpp's extra CPU buffer types on or off for the next model load.

    On some Intel Xeons with AMX, the AMX buffer type faults on the first token (FIELD_NOTES).
    Llama() reads llama_model_default_params() when it loads, so off means patching that function
    in both places llama-cpp-python looks it up. False if this llama-cpp-python has no such switch.
    """
    module = llama_cpp.llama_cpp
    original = getattr(module, "_gemma_chat_original_default_params", module.llama_model_default_params)
    module._gemma_chat_original_default_params = original
    if not any(name == "use_extra_bufts" for name, *_ in original()._fields_):
        return False

    def default_params():
        params = original()
        params.use_extra_bufts = enabled
        return params

    module.llama_model_default_params = default_params
    llama_cpp.llama_model_default_params = default_params
    return True


def simulate_amx_crash() -> None:
    """Act as the AMX Xeon does (FIELD_NOTES), on any CPU: a model loaded with the extra buffer types
    on dies of a real SIGSEGV at its first decode; with them off it works.

    Turned on by GEMMA_CHAT_SIMULATE_AMX_CRASH=1 (tests and CI), in every process that loads a
    model through this module: the workers, the bench's raw llama-cpp-python runs, the tests.
    """
    raw = llama_cpp.llama_cpp
    if getattr(raw, "_gemma_chat_simulating_amx_crash", False):
        return
    raw._gemma_chat_simulating_amx_crash = True
    load_model, decode = raw.llama_model_load_from_file, raw.llama_decode
    crashing_models: set[int] = set()

    def load_and_note_buffers(path_model, params):
        model = load_model(path_model, params)
        if model and params.use_extra_bufts:
            crashing_models.add(model)
        return model

    def decode_or_fault(ctx, batch):
        if raw.llama_get_model(ctx) in crashing_models:
            sys.stderr.write("ggml_backend_amx_mul_mat: general protection fault (simulated AMX crash)\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGSEGV)
        return decode(ctx, batch)

    for module in (raw, llama_cpp):  # llama_cpp re-exports the functions: patch both names
        module.llama_model_load_from_file = load_and_note_buffers
        module.llama_decode = decode_or_fault


if simulating_amx_crash():
    simulate_amx_crash()


class LlamaRunner:
    """A loaded model and its generation loop. Not thread-safe: one generation at a time."""

    def __init__(self, config: RunnerConfig):
        self.config = config
        self.llama: llama_cpp.Llama | None = None
        self.prompt_format: ChatTemplate | Transcript | None = None
        self._stop: threading.Event | None = None  # the running generation's, read by the abort callback
        self._abort_callback = llama_cpp.ggml_abort_callback(lambda _data: self._stop_requested())

    def load(self) -> None:
        set_extra_buffers(self.config.extra_buffers)
        llama = llama_cpp.Llama(
            model_path=self.config.model_path,
            n_ctx=self.config.n_ctx,
            n_threads=self.config.n_threads,
            n_threads_batch=self.config.n_threads,
            n_gpu_layers=self.config.n_gpu_layers,
            verbose=False,
        )
        try:
            self.prompt_format = choose_prompt_format(llama)
        except Exception:  # e.g. a template that is not valid Jinja: free the weights we just mapped
            llama.close()
            raise
        self.llama = llama

    def probe(self) -> None:
        """Evaluate a short prompt and decode a token: where a broken CPU buffer type crashes."""
        tokens = self.llama.tokenize(b"Q: What is two plus two?\nA:", add_bos=True)
        stream = self.llama.generate(tokens, temp=0.0)
        try:
            next(stream)
        finally:
            stream.close()
        self.llama.reset()

    def close(self) -> None:
        if self.llama is not None:
            self.llama.close()
            self.llama = None

    def _stop_requested(self) -> bool:
        stop = self._stop
        return stop is not None and stop.is_set()

    def _watch_for_abort(self, on: bool) -> None:
        """Let `stop` interrupt llama_decode between graph nodes — used only during prefill.

        The callback runs Python once per graph node (~450 times a token for the 270M), which costs
        ~12% of decode speed, and decode is stopped between tokens anyway.
        """
        callback = self._abort_callback if on else llama_cpp.ggml_abort_callback()
        llama_cpp.llama_set_abort_callback(self.llama.ctx, callback, None)

    def fit(self, turns: list[dict[str, str]]) -> list[int]:
        """The prompt's tokens, dropping the oldest user/assistant pairs until reply room remains."""
        llama, max_tokens, label = self.llama, self.config.max_tokens, self.config.label
        budget = llama.n_ctx() - max_tokens
        try:
            while True:
                tokens = self.prompt_format.tokenize(llama, turns)
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
            f"Your message is too long for {label}: it is about {content_tokens:,} tokens and at most "
            f"{allowed:,} fit (roughly {allowed_chars:,} characters). Please shorten it.",
            detail=f"prompt {len(tokens)} tokens + max_tokens {max_tokens} > n_ctx {llama.n_ctx()}",
        )

    def generate(
        self, turns: list[dict[str, str]], stop: threading.Event, sampling: Sampling | None = None
    ) -> Iterator[str | GenerationResult]:
        """Text deltas, then one GenerationResult (queued_ms 0: the app adds its own queueing)."""
        started = time.monotonic()
        tokens = self.fit(turns)
        llama, prompt_format, max_tokens = self.llama, self.prompt_format, self.config.max_tokens
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        stops = prompt_format.stop
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, emitted, completion, first_token_at = "", 0, 0, None
        yielded = False  # until the first delta, leading blanks are skipped, not streamed
        finish = "length"
        self._stop = stop
        stream = llama.generate(tokens, **sampling_for(prompt_format, self.config.temperature, sampling))
        try:
            while completion < max_tokens:
                if stop.is_set():
                    finish = "stopped"
                    break
                prefill = completion == 0
                if prefill:
                    self._watch_for_abort(True)
                try:
                    token = next(stream)
                finally:
                    if prefill:
                        self._watch_for_abort(False)
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
            if not stop.is_set():
                raise GenerationError("The model failed while generating; please try again.", detail=str(exc)) from exc
            finish = "stopped"
        except ValueError as exc:
            raise ContextTooLongError("The conversation is too long for the model.", detail=str(exc)) from exc
        finally:
            stream.close()
            self._stop = None

        text = text.rstrip()  # bytes of a character cut off by the stop are dropped, not shown as "\ufffd"
        if not yielded:
            emitted = len(text) - len(text.lstrip())
        if len(text) > emitted:
            yield text[emitted:]
        yield GenerationResult(
            text=text.lstrip(),
            prompt_tokens=len(tokens),
            completion_tokens=completion,
            finish_reason=finish,
            ttft_ms=int(round((first_token_at - started) * 1000)) if first_token_at is not None else None,
            duration_ms=ms_since(started),
            model_label=self.config.label,
        )


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [text.find(s) for s in stops if s and s in text]
    return min(found) if found else None


def _safe_end(text: str, stops: Sequence[str]) -> int:
    """How much of `text` can be streamed: hold back a tail that may begin a stop string,
    and trailing whitespace, which is dropped if the answer ends there."""
    return min(len(text.rstrip()), len(text) - stop_prefix_length(text, stops))
