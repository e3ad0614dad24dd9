"""The worker's decode loop on the real 270M, in this process: batching, Stop, the prompt cache, overflow.

These drive backends/batch_loop.py directly (the same code the worker runs) so they can compare the
model's logits step by step; tests/test_batching_worker.py covers the same behaviour through real
worker processes, the engine and the ledger. Extra CPU buffers stay off: the tests must not depend
on this machine's CPU (issue 18).
"""

from __future__ import annotations

import random
import threading

import llama_cpp
import numpy as np
import pytest

from gemma_chat.backends.batch_loop import BatchLoop
from gemma_chat.backends.llama_runner import LlamaRunner, RunnerConfig
from gemma_chat.backends.llama_runner import save_sequence
from gemma_chat.config import physical_cores

QUESTIONS = [
    "What is the capital of France?",
    "Tell me a long story about a dragon who lives in a castle by the sea.",
    "Why is the sky blue?",
    "How do bees make honey?",
]
# Measured on the 270M (2-core Xeon, llama.cpp in llama-cpp-python 0.3.36): decode steps holding one
# token of each sequence give bit-identical logits to each sequence alone, and so does a prompt read
# alone in its batch, in any chunking or slot. A prompt read in the same llama_decode as another
# sequence's tokens differs by up to 1.2 in max |logit| (of logits up to ~25): llama.cpp's kernels
# for a multi-sequence micro-batch — the unified KV cache (kv_unified) shows the same, so it is not
# our slot bookkeeping. The top-1 token never changed, nor any greedy answer.
# A prompt continued from a reused or restored prefix differs from a fresh prefill by up to 0.62
# here (its new cells sit elsewhere in the cache, so attention sums in another order), with or
# without the sliding window in play. A prefix broken by a lost window would change the answer.
LOGIT_TOLERANCE = 1.5


def words(count: int, seed: int) -> str:
    vocabulary = "river stone lantern orchard copper meadow violin harbor thunder pepper glacier saddle".split()
    rng = random.Random(seed)
    return " ".join(rng.choice(vocabulary) for _ in range(count))


def loaded_runner(gguf, *, parallel: int, max_tokens: int) -> LlamaRunner:
    runner = LlamaRunner(RunnerConfig(
        model_path=str(gguf), label="270M", n_ctx=1024, n_threads=physical_cores(), n_gpu_layers=0,
        max_tokens=max_tokens, temperature=0.0, extra_buffers=False, parallel=parallel, prompt_cache_mb=64,
    ))  # fmt: skip
    runner.load()
    return runner


@pytest.fixture(scope="module")
def runner(bundled_gguf):
    runner = loaded_runner(bundled_gguf, parallel=4, max_tokens=12)
    yield runner
    runner.close()


class Recording(BatchLoop):
    """The loop with its events and, per request, the logits row it sampled each token from."""

    def __init__(self, runner: LlamaRunner, **kwargs):
        self.events: list[tuple[str, dict]] = []
        super().__init__(runner, lambda event, **fields: self.events.append((event, fields)), **kwargs)
        self.logits: dict[int, list[np.ndarray]] = {}
        vocab = llama_cpp.llama_model_get_vocab(runner.llama.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(runner.ctx), True)  # no cache from earlier tests

    def _advance(self, request):
        if request.logits_index is not None:
            row = llama_cpp.llama_get_logits_ith(self.ctx, request.logits_index)
            self.logits.setdefault(request.id, []).append(np.ctypeslib.as_array(row, shape=(self.n_vocab,)).copy())
        super()._advance(request)

    def ask(self, request_id: int, content, stop: threading.Event | None = None, **sampling) -> None:
        turns = content if isinstance(content, list) else [{"role": "user", "content": content}]
        self.submit(request_id, turns, stop or threading.Event(), sampling or None)

    def run(self) -> None:
        while self.busy:
            self.step()

    def done(self, request_id: int) -> dict:
        (fields,) = [f for event, f in self.events if event == "done" and f["id"] == request_id]
        return fields

    def texts(self, request_id: int) -> str:
        return "".join(f["text"] for event, f in self.events if event == "text" and f["id"] == request_id)


def alone(runner: LlamaRunner, content, **sampling) -> Recording:
    loop = Recording(runner)
    loop.ask(1, content, **sampling)
    loop.run()
    loop.close()
    return loop


# --- batching --------------------------------------------------------------------------------


def test_four_sequences_in_one_batch_decode_as_each_alone(runner):
    solo = [alone(runner, question) for question in QUESTIONS]
    together = Recording(runner)
    for request_id, question in enumerate(QUESTIONS, 1):
        together.ask(request_id, question)
    together.run()
    together.close()

    for request_id, lone in enumerate(solo, 1):
        steps, lone_steps = together.logits[request_id], lone.logits[1]
        assert len(steps) == len(lone_steps)
        for batched, single in zip(steps, lone_steps):
            assert int(np.argmax(batched)) == int(np.argmax(single))
            assert float(np.max(np.abs(batched - single))) <= LOGIT_TOLERANCE
        # the same greedy answer, streamed in full, with the same counts
        assert together.texts(request_id) == lone.texts(1) == together.done(request_id)["text"]
        assert together.done(request_id)["completion_tokens"] == lone.done(1)["completion_tokens"]
    assert len({together.done(i)["text"] for i in range(1, 5)}) == 4  # no answer leaked into another


def test_stop_of_one_of_four_ends_it_at_the_next_step_and_the_others_finish_unchanged(runner):
    solo = {i: alone(runner, q).done(1)["text"] for i, q in enumerate(QUESTIONS, 1) if i != 2}
    loop = Recording(runner)
    stop = threading.Event()
    for request_id, question in enumerate(QUESTIONS, 1):
        loop.ask(request_id, question, stop=stop if request_id == 2 else None)
    while len(loop.logits.get(2, [])) < 3:  # three tokens of the second answer
        loop.step()
    stop.set()
    tokens_before = len(loop.logits[2])
    loop.step()
    stopped = loop.done(2)
    assert stopped["finish_reason"] == "stopped" and stopped["completion_tokens"] <= tokens_before
    assert 2 not in [r.id for r in loop.running] and loop.running  # its slot is free; others still decode
    loop.run()
    loop.close()
    for request_id, text in solo.items():
        assert loop.done(request_id)["text"] == text


def test_a_stop_before_the_prompt_is_read_frees_the_slot_without_an_answer(runner):
    loop = Recording(runner)
    stop = threading.Event()
    stop.set()
    loop.ask(1, words(800, 1), stop=stop)
    loop.run()
    loop.close()
    done = loop.done(1)
    assert (done["finish_reason"], done["completion_tokens"], done["ttft_ms"], done["text"]) == ("stopped", 0, None, "")
    assert not loop.running


def test_max_tokens_of_a_request_counts_model_tokens_and_says_length(runner):
    loop = alone(runner, QUESTIONS[1], max_tokens=5)
    done = loop.done(1)
    assert (done["completion_tokens"], done["finish_reason"]) == (5, "length")
    assert len(loop.logits[1]) == 5


# --- the prompt cache ------------------------------------------------------------------------


LONG_QUESTION = f"{words(150, 11)}. {QUESTIONS[1]}"  # much longer than the format's shared preamble


def conversation(first_answer: str, *more: str) -> list[dict[str, str]]:
    turns = [{"role": "user", "content": LONG_QUESTION}, {"role": "assistant", "content": first_answer}]
    for index, text in enumerate(more):
        turns.append({"role": "user" if index % 2 == 0 else "assistant", "content": text})
    return turns


def test_a_second_turn_after_another_users_turn_prefills_only_its_suffix(runner):
    loop = Recording(runner)
    loop.ask(1, LONG_QUESTION)
    loop.run()
    first = loop.done(1)
    loop.ask(2, words(200, 2))  # another user's turn, in another slot
    loop.run()
    loop.ask(3, conversation(first["text"], "And then what happened?"))
    loop.run()
    loop.close()
    second = loop.done(3)
    assert second["cache"] == "slot"
    assert second["prompt_tokens_reused"] >= first["prompt_tokens"]
    assert second["prompt_tokens_prefilled"] == second["prompt_tokens"] - second["prompt_tokens_reused"] < 30
    assert first["cache"] == "" and loop.done(2)["cache"] == ""


def test_an_evicted_conversation_comes_back_from_ram(bundled_gguf):
    one_slot = loaded_runner(bundled_gguf, parallel=1, max_tokens=8)
    try:
        loop = Recording(one_slot)
        long_question = words(400, 3) + "?"
        loop.ask(1, long_question)
        loop.run()
        first = loop.done(1)
        loop.ask(2, words(300, 4))  # takes the only slot: the first conversation goes to RAM
        loop.run()
        assert len(loop.saved) == 1
        follow_up = [{"role": "user", "content": long_question}, {"role": "assistant", "content": first["text"]},
                     {"role": "user", "content": "Say that again."}]  # fmt: skip
        loop.ask(3, follow_up)
        loop.run()
        back = loop.done(3)
        assert back["cache"] == "ram" and back["prompt_tokens_reused"] >= first["prompt_tokens"]
        # The restore overwrote the whole slot: the conversation it held went to RAM in turn, though
        # it was shorter than the one restored (it was dropped, and prefilled again whole, before).
        second = loop.done(2)
        loop.ask(4, [{"role": "user", "content": words(300, 4)}, {"role": "assistant", "content": second["text"]},
                     {"role": "user", "content": "Say that again."}])  # fmt: skip
        loop.run()
        loop.close()
        assert loop.done(4)["cache"] == "ram" and loop.done(4)["prompt_tokens_reused"] >= second["prompt_tokens"]
    finally:
        one_slot.close()


def test_a_reused_or_restored_prefix_gives_the_logits_of_a_fresh_prefill(runner):
    """Gemma 3's sliding-window layers: with the full-size SWA cache, cutting a sequence back to a
    prefix longer than the window, or restoring it from RAM, leaves exactly what a fresh prefill
    would have."""
    window = llama_cpp.llama_model_n_swa(runner.llama.model)
    shared = words(60, 5)
    while len(runner.llama.tokenize(shared.encode())) < window + 100:
        shared += " " + words(20, len(shared))
    prompt = f"{shared} lantern?"
    fresh = alone(runner, prompt).logits[1][0]

    loop = Recording(runner)
    loop.ask(1, f"{shared} thunder glacier saddle meadow?")  # the same long prefix, another ending
    loop.run()
    loop.ask(2, prompt)
    loop.run()
    assert loop.done(2)["cache"] == "slot" and loop.done(2)["prompt_tokens_reused"] > window
    # Evict that slot to RAM and empty the context: asking again must restore it.
    slot = next(s for s in loop.slots if s.cached)
    loop.saved.add(list(slot.cached), save_sequence(runner.ctx, slot.seq_id))
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(runner.ctx), True)
    for each in loop.slots:
        each.cached = []
    loop.ask(3, prompt)
    loop.run()
    loop.close()
    assert loop.done(3)["cache"] == "ram" and loop.done(3)["prompt_tokens_reused"] > window

    for other in (loop.logits[2][0], loop.logits[3][0]):
        assert int(np.argmax(other)) == int(np.argmax(fresh))
        assert set(np.argsort(other)[-5:]) == set(np.argsort(fresh)[-5:])
        assert float(np.max(np.abs(other - fresh))) <= LOGIT_TOLERANCE


# --- overflow --------------------------------------------------------------------------------


def test_a_chat_past_the_context_drops_half_at_once_and_keeps_its_prefix_for_later_turns(runner):
    budget = runner.n_ctx - runner.config.max_tokens
    turns: list[dict[str, str]] = []
    starts, lengths = [], []
    for turn in range(60):
        turns += [{"role": "user", "content": f"Question {turn}: {words(20, 100 + turn)}?"}]
        prompt = runner.fit(turns)
        lengths.append(len(prompt))
        text = runner.llama.detokenize(prompt).decode("utf-8", errors="replace")
        starts.append(next(i for i in range(turn + 1) if f"Question {i}:" in text))
        turns += [{"role": "assistant", "content": f"Answer {turn}: {words(20, 500 + turn)}."}]
    assert max(lengths) <= budget
    cuts = [turn for turn in range(1, 60) if starts[turn] != starts[turn - 1]]
    assert len(cuts) >= 2, "the chat should have overflowed more than once"
    for turn in cuts:  # each cut drops about half the budget at once...
        assert lengths[turn] <= 0.6 * budget, (turn, lengths[turn])
    between = [turn for turn in range(cuts[0] + 1, 60) if turn not in cuts]
    assert len(between) >= 5 * len(cuts)  # ...so most turns keep the previous turn's start (and prefix)


# --- settings --------------------------------------------------------------------------------


def test_parallel_prompt_cache_and_gpu_layers_settings(tmp_path):
    from gemma_chat.backends.llama_runner import gpu_layers
    from gemma_chat.config import load_settings
    from gemma_chat.errors import ConfigError

    defaults = load_settings(data_dir=tmp_path, env={}).tiers["mini"]
    assert (defaults.parallel, defaults.n_gpu_layers, defaults.prompt_cache_mb) == ("auto", "auto", 256)
    env = {"GEMMA_CHAT_MINI_PARALLEL": "3", "GEMMA_CHAT_MINI_N_GPU_LAYERS": "0", "GEMMA_CHAT_PRO_PARALLEL": "AUTO"}
    settings = load_settings(data_dir=tmp_path, env=env)
    assert (settings.tiers["mini"].parallel, settings.tiers["mini"].n_gpu_layers, settings.tiers["pro"].parallel) == (3, 0, "auto")
    with pytest.raises(ConfigError, match="parallel"):
        load_settings(data_dir=tmp_path, env={"GEMMA_CHAT_MINI_PARALLEL": "0"})
    with pytest.raises(ConfigError):
        load_settings(data_dir=tmp_path, env={"GEMMA_CHAT_MINI_PARALLEL": "many"})
    # auto: every layer on the GPU exactly when this llama.cpp can offload, and the plan says which
    layers, said = gpu_layers("auto")
    assert (layers == -1) == llama_cpp.llama_supports_gpu_offload() and said
    assert gpu_layers(0) == (0, "CPU")
