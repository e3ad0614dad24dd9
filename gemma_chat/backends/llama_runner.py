"""One tier's llama.cpp model, inside its worker process: loading, prompt formats, trimming, decoding.

Loads the GGUF with a context of `parallel` sequences (one per slot, each with the tier's n_ctx),
formats and trims conversations with the model's own tokenizer, and owns the one call to
llama_decode. It is the only module that talks to llama.cpp: the decode loop over the slots
(backends/batch_loop.py) drives the batch, sampler and KV-state functions at the end of this file. A native fault here kills
only the worker; backends/local.py sees it and restarts the worker. Nothing here knows about
processes or pipes (backends/worker.py does).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import llama_cpp
from llama_cpp import _internals
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from ..errors import ContextTooLongError, GenerationError
from .base import Message, Sampling
from .cpu_features import simulating_amx_crash
from .prompts import TRANSCRIPT_SAMPLING, TRANSCRIPT_STOP, transcript_prompt

N_BATCH = 512  # tokens one llama_decode takes: the slots' next tokens plus prefill chunks
# Llama() builds a context of its own before we build the batched one; the probe runs on ours.
FIRST_CONTEXT_N_CTX = 64


@dataclass(frozen=True)
class RunnerConfig:
    """What the worker needs to load one tier: sent by the app as the worker's first message."""

    model_path: str
    label: str
    n_ctx: int
    n_threads: int
    n_gpu_layers: int | str  # "auto": every layer when llama.cpp was built with GPU offload, else 0
    max_tokens: int
    temperature: float | None
    extra_buffers: bool  # llama.cpp's extra CPU buffer types (AMX, …): they crash some CPUs
    parallel: int = 1  # slots: sequences decoded together, each with n_ctx of its own
    prompt_cache_mb: int = 0  # host RAM for evicted slots' KV state


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
    """A loaded model, its batched context and its tokenizer. Not thread-safe: one decode loop at a time."""

    def __init__(self, config: RunnerConfig):
        self.config = config
        self.llama: llama_cpp.Llama | None = None
        self.ctx = None  # the batched llama_context: `parallel` sequences of n_ctx each
        self.prompt_format: ChatTemplate | Transcript | None = None
        self.gpu = ""  # where the layers run, for the start-up line

    @property
    def n_ctx(self) -> int:
        """Each slot's context (the tier's n_ctx)."""
        return self.config.n_ctx

    @property
    def n_threads(self) -> int:
        return self.config.n_threads

    def load(self) -> None:
        set_extra_buffers(self.config.extra_buffers)
        layers, self.gpu = gpu_layers(self.config.n_gpu_layers)
        try:
            llama = self._load_llama(layers)
        except (ValueError, RuntimeError) as exc:
            if layers == 0:
                raise
            llama = self._load_llama(0)  # a GPU that is absent, too small or broken: the CPU still works
            self.gpu = f"CPU: loading on the GPU failed ({exc})"
        try:
            self.prompt_format = choose_prompt_format(llama)
            self.ctx = self._batched_context(llama)
        except Exception:  # e.g. a template that is not valid Jinja: free the weights we just mapped
            llama.close()
            raise
        self.llama = llama

    def _load_llama(self, layers: int) -> llama_cpp.Llama:
        return llama_cpp.Llama(
            model_path=self.config.model_path,
            n_ctx=FIRST_CONTEXT_N_CTX,
            n_threads=self.config.n_threads,
            n_threads_batch=self.config.n_threads,
            n_gpu_layers=layers,
            verbose=False,
        )

    def _batched_context(self, llama: llama_cpp.Llama):
        """Replace Llama's single-sequence context with one of `parallel` sequences.

        Not unified: each sequence gets its own n_ctx of KV cells, so a busy slot can never run
        out of room because of the others. swa_full (the C default, set here explicitly): Gemma 3's
        sliding-window layers keep the whole context, so cutting a sequence back to any prefix
        (prompt reuse) or restoring a saved one is exact — tests/test_batching.py proves it.
        Flash attention stays off, as Llama() has it, so numbers match the plan and the bench.
        """
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.config.n_ctx * self.config.parallel
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_seq_max = self.config.parallel
        params.n_threads = params.n_threads_batch = self.config.n_threads
        params.kv_unified = False
        params.swa_full = True
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.no_perf = True
        llama._ctx.close()  # Llama's own small context; its weights stay
        llama._ctx = _internals.LlamaContext(model=llama._model, params=params, verbose=False)
        return llama._ctx.ctx

    def probe(self) -> None:
        """Evaluate a short prompt and decode a token: where a broken CPU buffer type crashes."""
        tokens = self.llama.tokenize(b"Q: What is two plus two?\nA:", add_bos=True)
        stream = self.llama.generate(tokens, temp=0.0)
        try:
            next(stream)
        finally:
            stream.close()
        self.llama.reset()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)

    def close(self) -> None:
        if self.llama is not None:
            self.llama.close()
            self.llama = None
            self.ctx = None

    # --- the two hooks the decode loop calls (tests/reliability/worker_faults.py wraps them) ---

    def decode(self, batch, requests: Sequence[Any]) -> None:
        """One llama_decode of the step's batch; `requests` are those with tokens in it."""
        code = llama_cpp.llama_decode(self.ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")

    def on_text(self, request: Any, text: str) -> None:
        """Called after each text delta of `request` is sent."""

    # --- prompts ---

    def fit(self, turns: list[dict[str, str]]) -> list[int]:
        """The prompt's tokens; a conversation past n_ctx − max_tokens loses older turns in big steps.

        The cut points sit on a grid of half the budget, counted from the conversation's first turn,
        so they do not move from one turn to the next: after one cut the next turns share the
        prompt's prefix (the prompt cache reuses it) until the chat reaches the budget again and
        drops about half of it at once. Dropping one pair per turn would change the prefix every
        turn and re-prefill the whole context each time.
        """
        llama, max_tokens, label = self.llama, self.config.max_tokens, self.config.label
        budget = self.n_ctx - max_tokens
        try:
            tokens = self.prompt_format.tokenize(llama, turns)
            if len(tokens) <= budget:
                return tokens
            for start in _cut_points(self._turn_sizes(turns), budget // 2):
                tokens = self.prompt_format.tokenize(llama, turns[start:])
                if len(tokens) <= budget:
                    return tokens
            turns = turns[-1:]
        except ValueError as exc:  # the template's raise_exception, or a tokenizer failure
            raise GenerationError("The conversation could not be formatted for the model.", detail=str(exc)) from exc
        content = turns[0]["content"]
        content_tokens = max(1, len(llama.tokenize(content.encode("utf-8"), add_bos=False)))
        allowed = max(0, budget - (len(tokens) - content_tokens))
        allowed_chars = allowed * len(content) // content_tokens
        raise ContextTooLongError(
            "Your message is too long for {label}: it is about {tokens:,} tokens and at most "
            "{allowed:,} fit (roughly {chars:,} characters). Please shorten it.",
            label=label, tokens=content_tokens, allowed=allowed, chars=allowed_chars,
            detail=f"prompt {len(tokens)} tokens + max_tokens {max_tokens} > n_ctx {self.n_ctx}",
        )

    def _turn_sizes(self, turns: list[dict[str, str]]) -> list[int]:
        return [len(self.llama.tokenize(t["content"].encode("utf-8"), add_bos=False)) + 4 for t in turns]

    def token_piece(self, token: int) -> bytes:
        return self.llama.detokenize([token])

    def is_end_of_generation(self, token: int) -> bool:
        return llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(self.llama.model), token)


def _cut_points(sizes: list[int], step: int):
    """Where a too-long conversation may start (indices of user turns, oldest first): the first
    user turn at or after each multiple of `step` tokens, counted from the first turn; and
    finally the last turn alone."""
    cumulative, points, threshold = 0, [], step
    for index, size in enumerate(sizes[:-1]):
        if index % 2 == 0 and index > 0 and cumulative >= threshold:
            points.append(index)
            while threshold <= cumulative:
                threshold += step
        cumulative += size
    return points


def gpu_layers(setting: int | str) -> tuple[int, str]:
    """The n_gpu_layers to load with and a phrase for the start-up line."""
    if setting == "auto":
        if llama_cpp.llama_supports_gpu_offload():
            return -1, "GPU: every layer (n_gpu_layers auto)"
        return 0, "CPU (this llama.cpp has no GPU offload)"
    layers = int(setting)
    return layers, ("CPU" if layers == 0 else f"GPU: n_gpu_layers {layers}")


# --- the batch API the worker's decode loop drives (backends/batch_loop.py) -------------------------


def new_batch():
    """A batch of up to N_BATCH tokens, one sequence id each."""
    return llama_cpp.llama_batch_init(N_BATCH, 0, 1)


def free_batch(batch) -> None:
    llama_cpp.llama_batch_free(batch)


def abort_callback(should_abort):
    """`should_abort()` as llama.cpp's abort callback (keep a reference while it is installed)."""
    return llama_cpp.ggml_abort_callback(lambda _data: should_abort())


def set_abort_callback(ctx, callback) -> None:
    """Install `callback` (from abort_callback) for the context's decodes; None removes it."""
    llama_cpp.llama_set_abort_callback(ctx, callback if callback is not None else llama_cpp.ggml_abort_callback(), None)


def vocab_size(llama: llama_cpp.Llama) -> int:
    return llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(llama.model))


def sample(sampler, ctx, logits_index: int) -> int:
    return llama_cpp.llama_sampler_sample(sampler, ctx, logits_index)


def free_sampler(sampler) -> None:
    llama_cpp.llama_sampler_free(sampler)


PENALTY_LAST_N = 64  # llama-cpp-python's last_n_tokens_size: the repeat penalty's window


def sampler_chain(sampling: dict[str, float], n_vocab: int):
    """The chain llama-cpp-python's Llama.generate builds for the same arguments, so one stream
    samples as it did before batching: penalties, then greedy at temperature 0, else top-k, typical,
    top-p, min-p, temperature and a random draw."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = lambda sampler: llama_cpp.llama_sampler_chain_add(chain, sampler)  # noqa: E731
    add(llama_cpp.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, sampling.get("repeat_penalty", 1.0), 0.0, 0.0))
    temp = sampling.get("temp", 0.8)
    if temp == 0:
        add(llama_cpp.llama_sampler_init_greedy())
    else:
        add(llama_cpp.llama_sampler_init_top_k(int(sampling.get("top_k", 40))))
        add(llama_cpp.llama_sampler_init_typical(1.0, 1))
        add(llama_cpp.llama_sampler_init_top_p(sampling.get("top_p", 0.95), 1))
        add(llama_cpp.llama_sampler_init_min_p(sampling.get("min_p", 0.05), 1))
        add(llama_cpp.llama_sampler_init_temp(temp))
        add(llama_cpp.llama_sampler_init_dist(llama_cpp.LLAMA_DEFAULT_SEED))
    return chain


# --- a sequence's KV state in and out of llama.cpp -----------------------------------------------


def save_sequence(ctx, seq_id: int) -> bytes:
    size = llama_cpp.llama_state_seq_get_size(ctx, seq_id)
    buffer = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, seq_id)
    return ctypes.string_at(buffer, written)


def restore_sequence(ctx, seq_id: int, data: bytes) -> bool:
    clear_sequence(ctx, seq_id)
    buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    return llama_cpp.llama_state_seq_set_data(ctx, buffer, len(data), seq_id) > 0


def keep_prefix(ctx, seq_id: int, length: int) -> bool:
    """Drop the sequence's cells from position `length` on; False if llama.cpp cannot."""
    return llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), seq_id, length, -1)


def clear_sequence(ctx, seq_id: int) -> None:
    llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), seq_id, -1, -1)
