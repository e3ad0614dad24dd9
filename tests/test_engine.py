"""gemma_chat.inference.engine against the real bundled Gemma 3 270M: streaming, limits, queueing, stopping, failures."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from pathlib import Path

import pytest

from gemma_chat.backends.answer_text import _safe_end
from gemma_chat.backends.llama_runner import Transcript, sampling_for
from gemma_chat.inference.engine import Engine, GenerationResult, Sampling, Waiting
from gemma_chat.errors import ConfigError, ContextTooLongError, ModelUnavailableError, QueueFullError
from tests.conftest import demo_settings
from tests.gguf_fixtures import gemma3_metadata, write_gguf

pytestmark = pytest.mark.worker  # starts real model workers: .ci/run runs it on the simulated AMX CPU too


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Tell me a long story about a dragon who lives in a castle by the sea."}]


def load_engine(data_dir: Path, *, log=lambda line: None, queue_size: int = 8, **tiers: dict) -> Engine:
    """An Engine over the bundled 270M (n_ctx 1024, max_tokens 24) with per-tier overrides;
    `tiers` also selects which tiers exist."""
    settings = demo_settings(data_dir, queue_size=queue_size)
    chosen = {name: dataclasses.replace(settings.tiers[name], **overrides) for name, overrides in tiers.items()}
    return Engine.load(dataclasses.replace(settings, tiers=chosen or settings.tiers), log=log)


def run(engine: Engine, tier: str, messages, stop: threading.Event | None = None, sampling: Sampling | None = None):
    """Drain one generation: (text deltas, Waiting positions, result)."""
    deltas, waits, result = [], [], None
    for item in engine.generate(tier, messages, stop=stop, sampling=sampling):
        if isinstance(item, Waiting):
            waits.append(item.position)
        elif isinstance(item, str):
            assert result is None, "text after the result"
            deltas.append(item)
        else:
            assert result is None, "two results"
            result = item
    assert isinstance(result, GenerationResult)
    assert "".join(deltas) == result.text
    return deltas, waits, result


def until_text(generation) -> str:
    """Advance a generation to its first text delta (it then holds its tier's lock)."""
    for item in generation:
        if isinstance(item, str):
            return item
        assert isinstance(item, Waiting), f"finished before any text: {item}"
    raise AssertionError("no text")


def random_text(words: int) -> str:
    """Fresh text each call, so the model's prompt cache cannot skip the prefill."""
    vocabulary = "river stone lantern orchard copper meadow violin harbor thunder pepper glacier saddle".split()
    rng = random.Random(time.monotonic_ns())
    return " ".join(rng.choice(vocabulary) for _ in range(words))


def assert_answered(result: GenerationResult, engine: Engine, tier: str) -> None:
    max_tokens = next(t.max_tokens for t in engine.tiers() if t.tier == tier)
    assert result.finish_reason in ("stop", "length")
    assert 1 <= result.completion_tokens <= max_tokens
    assert result.text.strip()
    assert result.prompt_tokens > 0
    assert result.ttft_ms is not None and 0 <= result.ttft_ms <= result.duration_ms


@pytest.fixture(scope="module")
def tight_engine(tmp_path_factory, bundled_gguf):
    """mini: max_tokens 3; pro: max_tokens 24; at most one generation waiting per tier."""
    engine = load_engine(tmp_path_factory.mktemp("tight"), queue_size=1, mini={"max_tokens": 3}, pro={})
    yield engine
    engine.close()


# --- loading and streaming ---------------------------------------------------------------------


def test_both_tiers_serve_the_labelled_demo(demo_engine):
    mini, pro = demo_engine.tiers()
    assert (mini.tier, mini.price, pro.tier, pro.price) == ("mini", 1, "pro", 3)
    for status in (mini, pro):
        assert status.available and status.is_demo
        assert status.label == f"Gemma 3 270M (bundled demo) for {status.tier}"
        assert (status.n_ctx, status.max_tokens) == (1024, 24)
    assert demo_engine.is_available("mini") and not demo_engine.is_available("max")


def test_streams_a_sensible_answer(demo_engine):
    deltas, waits, result = run(demo_engine, "mini", QUESTION)
    assert waits == [] and len(deltas) >= 1
    assert_answered(result, demo_engine, "mini")
    assert result.model_label == "Gemma 3 270M (bundled demo) for mini"
    assert "\nQ:" not in result.text and "\n\n" not in result.text  # the transcript's stop strings end answers


def test_max_tokens_is_enforced(tight_engine):
    results = [run(tight_engine, "mini", STORY)[2] for _ in range(3)]
    assert all(r.completion_tokens <= 3 for r in results)
    assert any(r.finish_reason == "length" and r.completion_tokens == 3 for r in results)


def test_an_unknown_tier_is_a_config_error(demo_engine):
    with pytest.raises(ConfigError):
        next(demo_engine.generate("max", QUESTION))


# --- concurrency ------------------------------------------------------------------------------


def test_two_generations_on_one_tier_take_turns(demo_engine):
    first_has_lock, second_waiting = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def first():
        generation = demo_engine.generate("mini", STORY)
        text = until_text(generation)
        first_has_lock.set()
        second_waiting.wait(10)  # keep the lock until the second one has queued
        rest = list(generation)
        outcome["first"] = (text, rest, time.monotonic())

    def second():
        first_has_lock.wait(10)
        items = []
        for item in demo_engine.generate("mini", QUESTION):
            if isinstance(item, Waiting):
                second_waiting.set()
            elif isinstance(item, str) and "second_text_at" not in outcome:
                outcome["second_text_at"] = time.monotonic()
            items.append(item)
        outcome["second"] = items

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    _, first_rest, first_done_at = outcome["first"]
    assert isinstance(first_rest[-1], GenerationResult)
    assert_answered(first_rest[-1], demo_engine, "mini")
    second = outcome["second"]
    assert Waiting(1) in second
    assert isinstance(second[-1], GenerationResult)
    assert_answered(second[-1], demo_engine, "mini")
    assert outcome["second_text_at"] > first_done_at  # strictly one after the other
    assert second[-1].queued_ms > 0


def test_mini_and_pro_generate_at_the_same_time(demo_engine):
    mini = demo_engine.generate("mini", STORY)
    until_text(mini)  # mini is mid-stream, holding its lock
    _, waits, pro_result = run(demo_engine, "pro", QUESTION)
    assert waits == []  # pro never waited for mini
    assert_answered(pro_result, demo_engine, "pro")
    assert_answered(list(mini)[-1], demo_engine, "mini")


def test_mini_and_pro_in_parallel_threads(demo_engine):
    results: dict[str, GenerationResult] = {}
    threads = [
        threading.Thread(target=lambda tier=tier: results.__setitem__(tier, run(demo_engine, tier, STORY)[2]))
        for tier in ("mini", "pro", "mini", "pro")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert set(results) == {"mini", "pro"}
    for tier, result in results.items():
        assert_answered(result, demo_engine, tier)


def test_a_full_queue_refuses_at_once(tight_engine):
    running = tight_engine.generate("pro", STORY)
    until_text(running)
    queued = tight_engine.generate("pro", QUESTION)
    assert next(queued) == Waiting(1)

    started = time.monotonic()
    with pytest.raises(QueueFullError) as refused:
        next(tight_engine.generate("pro", QUESTION))
    assert time.monotonic() - started < 0.1
    assert refused.value.message == (
        "The Gemma 3 270M (bundled demo) for pro model is busy; please try again in a moment."
    )
    # The other tier has its own queue.
    assert_answered(run(tight_engine, "mini", QUESTION)[2], tight_engine, "mini")

    running.close()  # the consumer went away: its place is freed
    assert isinstance(list(queued)[-1], GenerationResult)
    _, waits, result = run(tight_engine, "pro", QUESTION)
    assert waits == []
    assert_answered(result, tight_engine, "pro")


def test_an_abandoned_waiter_leaves_the_queue(tight_engine):
    running = tight_engine.generate("pro", STORY)
    until_text(running)
    waiter = tight_engine.generate("pro", QUESTION)
    assert next(waiter) == Waiting(1)
    waiter.close()
    replacement = tight_engine.generate("pro", QUESTION)
    assert next(replacement) == Waiting(1)  # not QueueFullError: the abandoned place was given back
    running.close()
    assert isinstance(list(replacement)[-1], GenerationResult)


# --- stopping ---------------------------------------------------------------------------------


def test_stop_during_decode_then_generate_again(demo_engine):
    stop = threading.Event()
    deltas, result = [], None
    for item in demo_engine.generate("mini", STORY, stop=stop):
        if isinstance(item, str):
            deltas.append(item)
            stop.set()  # the user pressed Stop while text was streaming
        elif isinstance(item, GenerationResult):
            result = item
    assert result.finish_reason == "stopped"
    assert result.text == "".join(deltas)
    assert 1 <= result.completion_tokens < 24
    assert_answered(run(demo_engine, "mini", QUESTION)[2], demo_engine, "mini")


def test_stop_before_any_token(demo_engine):
    stop = threading.Event()
    stop.set()
    deltas, _, result = run(demo_engine, "pro", QUESTION, stop=stop)
    assert deltas == [] and result.text == ""
    assert (result.finish_reason, result.completion_tokens, result.ttft_ms) == ("stopped", 0, None)


@pytest.mark.slow
def test_stop_during_a_long_prefill_then_generate_again(tmp_path):
    """A ~3,000-token prompt takes seconds to prefill; Stop must not wait for it."""
    engine = load_engine(tmp_path, mini={"n_ctx": 4096, "max_tokens": 16})
    try:
        stop = threading.Event()
        stopped_at: list[float] = []

        def press_stop():
            stopped_at.append(time.monotonic())
            stop.set()

        timer = threading.Timer(0.15, press_stop)
        started = time.monotonic()
        timer.start()
        deltas, _, result = run(engine, "mini", [{"role": "user", "content": random_text(2600)}], stop=stop)
        latency = time.monotonic() - stopped_at[0]

        assert result.finish_reason == "stopped"
        assert (deltas, result.completion_tokens, result.ttft_ms) == ([], 0, None)  # stopped inside the prefill
        assert result.prompt_tokens > 2600
        assert latency < 1.0, f"stop took {latency:.2f} s during prefill"
        assert time.monotonic() - started < 2.0

        assert_answered(run(engine, "mini", QUESTION)[2], engine, "mini")  # the model is usable right after
    finally:
        engine.close()


def test_closing_the_generator_early_releases_the_tier(demo_engine):
    generation = demo_engine.generate("mini", STORY)
    until_text(generation)
    generation.close()  # the browser tab went away
    _, waits, result = run(demo_engine, "mini", QUESTION)
    assert waits == []
    assert_answered(result, demo_engine, "mini")


@pytest.mark.parametrize(
    ("text", "streamable"),
    [("Paris.", "Paris."), ("Paris. ", "Paris."), ("Paris.\n", "Paris."), ("Paris.\nQ", "Paris."),
     ("Paris.\nA", "Paris."), ("Q and A", "Q and A"), ("", "")],
)  # fmt: skip
def test_text_that_may_start_a_stop_string_is_held_back(text, streamable):
    assert text[: _safe_end(text, ["\nQ:", "\nA:", "\n\n"])] == streamable


# --- context length -----------------------------------------------------------------------------


@pytest.mark.slow
def test_history_is_trimmed_oldest_first_in_big_steps(demo_engine):
    history = []
    for turn in range(40):
        history += [
            {"role": "user", "content": f"Question {turn}: {random_text(25)}?"},
            {"role": "assistant", "content": f"Answer {turn}: {random_text(25)}."},
        ]
    _, _, result = run(demo_engine, "mini", history + QUESTION)
    mini = demo_engine.tiers()[0]
    budget = mini.n_ctx - mini.max_tokens
    # Older turns go in big steps (cut points every half budget from the chat's start), so at least
    # about half the budget is kept; tests/test_batching.py follows a chat turn by turn past its context.
    assert budget // 2 - 140 < result.prompt_tokens <= budget
    assert result.finish_reason in ("stop", "length")


def test_a_short_history_is_kept_whole(demo_engine):
    history = [
        {"role": "user", "content": "What is the largest ocean?"},
        {"role": "assistant", "content": "The Pacific Ocean."},
    ]
    alone = run(demo_engine, "pro", QUESTION)[2].prompt_tokens
    assert run(demo_engine, "pro", history + QUESTION)[2].prompt_tokens > alone + 10


def test_a_message_too_long_on_its_own_is_refused(demo_engine):
    generation = demo_engine.generate("mini", [*QUESTION, {"role": "assistant", "content": "Paris."},
                                               {"role": "user", "content": random_text(1500)}])  # fmt: skip
    with pytest.raises(ContextTooLongError) as refused:
        next(generation)
    message = refused.value.message
    assert message.startswith("Your message is too long for Gemma 3 270M (bundled demo) for mini")
    assert "at most" in message and "characters" in message
    assert "n_ctx 1024" in refused.value.detail
    assert_answered(run(demo_engine, "mini", QUESTION)[2], demo_engine, "mini")


# --- prompt formats ------------------------------------------------------------------------------


def test_a_model_with_a_chat_template_uses_it(tmp_path, templated_gguf):
    engine = load_engine(tmp_path, pro={"model_file": str(templated_gguf), "required_quantization": ""})
    try:
        (pro,) = engine.tiers()
        assert pro.label == "Gemma 3 12B Q8_0" and not pro.is_demo
        _, _, result = run(engine, "pro", QUESTION)
        # create_chat_completion counts 16 prompt tokens for this message with Gemma's template.
        assert result.prompt_tokens == 16
        assert result.completion_tokens >= 1
        # Turns that would break the template's strict alternation are merged or dropped, not an error.
        messy = [
            {"role": "assistant", "content": "Welcome!"},
            {"role": "user", "content": "Hello"},
            {"role": "user", "content": "Are you there?"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "Hello again"},
        ]
        assert run(engine, "pro", messy)[2].completion_tokens >= 1
    finally:
        engine.close()


def test_temperature_zero_is_greedy_and_repeatable(tmp_path, bundled_gguf):
    """The benchmarks compare the engine with raw llama-cpp-python at temperature 0."""
    engine = load_engine(tmp_path, mini={"temperature": 0.0, "max_tokens": 16})
    try:
        texts = {run(engine, "mini", STORY)[2].text for _ in range(3)}
        assert len(texts) == 1 and next(iter(texts))
    finally:
        engine.close()
    recommended = Transcript.sampling
    assert sampling_for(Transcript(), demo_settings(tmp_path).tiers["mini"].temperature) == recommended
    assert sampling_for(Transcript(), 0.0) == {**recommended, "temp": 0.0}


def test_a_request_s_temperature_and_top_p_reach_llama_cpp(tmp_path, bundled_gguf):
    """On a tier that samples wildly, a request's temperature 0 or top_p 0 makes it greedy: the
    same answer every time, where the tier's own sampling gives a different one almost every time."""
    engine = load_engine(tmp_path, mini={"temperature": 2.0, "max_tokens": 16})
    try:
        wild = {run(engine, "mini", STORY)[2].text for _ in range(3)}
        assert len(wild) > 1, "the tier's temperature 2 should vary the answer"
        for sampling in (Sampling(temperature=0.0), Sampling(top_p=0.0)):
            texts = {run(engine, "mini", STORY, sampling=sampling)[2].text for _ in range(3)}
            assert len(texts) == 1 and next(iter(texts)), sampling
    finally:
        engine.close()
    asked = Sampling(temperature=1.5, top_p=0.5)
    assert sampling_for(Transcript(), 0.0, asked) == {**Transcript.sampling, "temp": 1.5, "top_p": 0.5}
    assert sampling_for(Transcript(), 0.7, Sampling(top_p=0.5)) == {**Transcript.sampling, "temp": 0.7, "top_p": 0.5}


# --- failures ------------------------------------------------------------------------------------


def test_a_model_that_fails_to_load_leaves_the_other_working(tmp_path, bundled_gguf):
    # A valid header that plans fine, but with no tensors at all: llama.cpp refuses to load it.
    hollow = write_gguf(tmp_path / "hollow.gguf", gemma3_metadata(file_type=7, block_count=2, head_count_kv=1))
    lines: list[str] = []
    engine = load_engine(
        tmp_path,
        log=lines.append,
        mini={"model_file": str(bundled_gguf), "required_quantization": ""},
        pro={"model_file": str(hollow)},
    )
    try:
        assert not engine.is_available("pro")
        pro = engine.tiers()[1]
        assert pro.reason.startswith("Could not load hollow.gguf")
        with pytest.raises(ModelUnavailableError) as refused:
            next(engine.generate("pro", QUESTION))
        assert "Gemma 3 12B Q8_0 model is not available" in refused.value.message
        assert_answered(run(engine, "mini", QUESTION)[2], engine, "mini")
        # The two workers load side by side, so their lines come in either order. The extra-buffer
        # lines (the plan, and on a CPU where they crash the restart without them) are another test's.
        tier_lines = sorted(line for line in lines if "CPU extra buffers" not in line)
        assert len(tier_lines) == 2
        assert tier_lines[0].startswith("mini: Gemma 3 1B loaded in")
        assert tier_lines[1].startswith("pro: Gemma 3 12B Q8_0 unavailable — Could not load hollow.gguf")
    finally:
        engine.close()


def test_a_missing_model_with_strict_models_is_unavailable(tmp_path, bundled_gguf):
    settings = demo_settings(tmp_path / "data", strict_models=True)
    mini = dataclasses.replace(settings.tiers["mini"], model_file=str(bundled_gguf), required_quantization="")
    pro = dataclasses.replace(settings.tiers["pro"], model_file=str(tmp_path / "absent.gguf"))
    engine = Engine.load(dataclasses.replace(settings, tiers={"mini": mini, "pro": pro}), log=lambda line: None)
    try:
        assert engine.is_available("mini") and not engine.is_available("pro")
        assert "python scripts/download_models.py --tier pro" in engine.tiers()[1].reason
    finally:
        engine.close()


def test_after_close_nothing_generates(tmp_path, bundled_gguf):
    engine = load_engine(tmp_path, mini={})
    engine.close()
    assert not engine.is_available("mini")
    with pytest.raises(ModelUnavailableError):
        next(engine.generate("mini", QUESTION))
