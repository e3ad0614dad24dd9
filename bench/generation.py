"""Generation overhead: raw llama-cpp-python in this process against our engine and a full chat turn,
whose model runs in a worker process (backends/local.py) and streams its text over a pipe.

Every side gets the same model file, n_ctx, n_threads, max_tokens, greedy sampling (temperature 0,
the prompt format's other settings) and the exact prompt tokens our prompt format produces, so
only the machinery differs. Each side has its own Llama object and sees the same sequence of
prompts (a warm-up, then the prompt set round after round), so llama.cpp's prompt-prefix cache is
in the same state for every side; the sides take turns prompt by prompt, so drift in the
machine's load hits them alike.
"""

from __future__ import annotations

import codecs
import dataclasses
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import llama_cpp

from gemma_chat.inference import engine as engine_module
from gemma_chat.backends import llama_runner
from gemma_chat.config import Settings, TierSettings, load_settings, physical_cores

from .common import Options, ms, now, ratio

# Counting prompts run to max_tokens (the 270M base model keeps counting); the questions get
# the short one-line answers the demo model gives in the app.
PROMPTS = [
    "Continue counting: one, two, three, four, five, six, seven,",
    "What is the capital of France?",
    "Keep counting without stopping: 1, 2, 3, 4, 5, 6, 7, 8,",
    "Describe the water cycle in as much detail as you can.",
    "Continue counting: 1, 2, 3,",
    "Explain in detail how a steam engine works, step by step.",
]
QUICK_PROMPTS = PROMPTS[:3]
WARM_UP = "How many days are in a week?"


def prompt_set(options: Options) -> list[str]:
    return QUICK_PROMPTS if options.quick else PROMPTS


@dataclass
class Run:
    """One generation as its consumer saw it. Times are perf_counter seconds."""

    side: str
    prompt: int
    round: int
    started: float
    first_text: float | None = None
    last_text: float | None = None
    ended: float | None = None
    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ttft(self) -> float | None:
        return None if self.first_text is None else self.first_text - self.started

    @property
    def window(self) -> float | None:
        """First text to the end of the stream as its consumer sees it (for a chat turn: billing
        included). Every side streams the same tokens, so tokens/s = (tokens - 1) / window."""
        if self.first_text is None or self.ended is None:
            return None
        return self.ended - self.first_text


# --- settings shared by every side ------------------------------------------------------------


def bench_tier(name: str, model: Path, max_tokens: int, *, n_threads: int = 0, price: int = 1) -> TierSettings:
    return TierSettings(
        name=name,
        display_name=f"bench {name}",
        model_file=str(model),
        price=price,
        max_tokens=max_tokens,
        n_threads=n_threads,
        temperature=0.0,
    )


def bench_settings(data_dir: Path, tiers: dict[str, TierSettings], **overrides) -> Settings:
    settings = load_settings(data_dir=data_dir, env={}, bcrypt_rounds=4, strict_models=True, **overrides)
    return dataclasses.replace(settings, tiers=tiers)


def load_raw_llama(path: Path, n_ctx: int, n_threads: int = 0) -> llama_cpp.Llama:
    """The same constructor arguments the worker's LlamaRunner.load uses."""
    threads = n_threads or physical_cores()
    return llama_cpp.Llama(
        model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_gpu_layers=0, verbose=False
    )


@dataclass
class RawSide:
    """Raw llama-cpp-python on its own Llama: the prompt tokens and sampling our engine would use."""

    llama: llama_cpp.Llama
    tier: TierSettings

    def __post_init__(self):
        self.prompt_format = llama_runner.choose_prompt_format(self.llama)
        self.sampling = llama_runner.sampling_for(self.prompt_format, self.tier.temperature)
        self.stops = list(self.prompt_format.stop)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llama.model)

    def tokens(self, message: str) -> list[int]:
        return self.prompt_format.tokenize(self.llama, [{"role": "user", "content": message}])

    def token_loop(self, run: Run, message: str) -> Run:
        """Llama.generate, one token at a time: detokenize, decode UTF-8, look for a stop string.

        The least any text streamer has to do; this is the reference the targets are measured against.
        """
        tokens = self.tokens(message)
        run.prompt_tokens = len(tokens)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, count, finish = "", 0, "length"
        run.started = now()
        stream = self.llama.generate(tokens, **self.sampling)
        try:
            for token in stream:
                stamp = now()
                if run.first_text is None:
                    run.first_text = stamp
                run.last_text = stamp
                if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                    finish = "stop"
                    break
                count += 1
                text += decoder.decode(self.llama.detokenize([token]))
                cut = _find_stop(text, self.stops)
                if cut is not None:
                    text, finish = text[:cut], "stop"
                    break
                if count >= self.tier.max_tokens:
                    break
        finally:
            stream.close()
        run.ended = now()
        run.text, run.completion_tokens, run.finish = text.strip(), count, finish
        return run

    def completion_stream(self, run: Run, message: str) -> Run:
        """Llama.create_completion(stream=True): llama-cpp-python's public streaming API."""
        tokens = self.tokens(message)
        run.prompt_tokens = len(tokens)
        s = self.sampling
        run.started = now()
        chunks = self.llama.create_completion(
            prompt=tokens,
            max_tokens=self.tier.max_tokens,
            stop=self.stops,
            stream=True,
            temperature=s["temp"],
            top_k=s["top_k"],
            top_p=s["top_p"],
            min_p=s["min_p"],
            repeat_penalty=s["repeat_penalty"],
        )
        text = ""
        for chunk in chunks:
            stamp = now()
            delta = chunk["choices"][0]["text"]
            if delta:
                if run.first_text is None:
                    run.first_text = stamp
                run.last_text = stamp
                text += delta
            run.finish = chunk["choices"][0].get("finish_reason") or run.finish
        run.ended = now()
        run.text = text.strip()
        return run


def _find_stop(text: str, stops: list[str]) -> int | None:
    found = [text.find(s) for s in stops if s and s in text]
    return min(found) if found else None


def engine_run(engine, tier: str, run: Run, message: str) -> Run:
    """Our engine: Engine.generate, text deltas as the UI's chat turn receives them (from the tier's
    worker process, or its remote server)."""
    run.started = now()
    result = None
    for item in engine.generate(tier, [{"role": "user", "content": message}]):
        if isinstance(item, str):
            stamp = now()
            if run.first_text is None:
                run.first_text = stamp
            run.last_text = stamp
        elif isinstance(item, engine_module.GenerationResult):
            result = item
    run.ended = now()
    run.text = result.text
    run.prompt_tokens, run.completion_tokens, run.finish = result.prompt_tokens, result.completion_tokens, result.finish_reason
    run.extra["engine_ttft_ms"] = result.ttft_ms
    return run


def turn_run(settings: Settings, engine, user_id: int, tier: str, run: Run, message: str) -> Run:
    """A full chat turn: session check, hold, stream, capture, interaction log (turn.run_turn)."""
    from gemma_chat.chats import turn
    from gemma_chat.store.db import Interaction

    run.started = now()
    final = None
    for update in turn.run_turn(settings, engine, user_id, tier, message):
        stamp = now()
        if update.status == "streaming":
            if run.first_text is None:
                run.first_text = stamp
            run.last_text = stamp
        final = update
    run.ended = now()
    if final.status != "ok":
        raise RuntimeError(f"the chat turn ended {final.status}: {final.message}")
    row = Interaction.get(Interaction.request_id == final.request_id)
    run.text = row.answer
    run.prompt_tokens, run.completion_tokens = row.prompt_tokens, row.completion_tokens
    run.finish = row.status
    run.extra["credits_charged"] = final.credits_charged
    return run


# --- aggregation ---------------------------------------------------------------------------------


def decode_tokens(run: Run, tokens: int) -> int:
    """Tokens produced after the first one: what the window streams."""
    return max(0, tokens - 1)


def summarize(runs: list[Run], reference: dict[tuple[int, int], Run], label: str) -> dict:
    """Tokens/s over the streaming windows and time to first token, paired with the reference runs.

    Token counts come from the reference side's run of the same prompt (all sides produce the same
    tokens at temperature 0; `identical_outputs` checks it). Each prompt's window is the median of
    its rounds, so one stall of a busy machine does not decide the figure.
    """
    by_prompt: dict[int, list[Run]] = {}
    for r in runs:
        by_prompt.setdefault(r.prompt, []).append(r)
    tokens = window = 0.0
    for prompt, prompt_runs in by_prompt.items():
        tokens += decode_tokens(prompt_runs[0], reference[(prompt_runs[0].round, prompt)].completion_tokens)
        window += statistics.median(r.window or 0.0 for r in prompt_runs)
    ttfts = [r.ttft for r in runs if r.ttft is not None]
    added = [
        r.ttft - reference[(r.round, r.prompt)].ttft
        for r in runs
        if r.ttft is not None and reference[(r.round, r.prompt)].ttft is not None
    ]
    identical = all(
        r.text == reference[(r.round, r.prompt)].text and r.completion_tokens in (None, reference[(r.round, r.prompt)].completion_tokens)
        for r in runs
    )
    tails = [r.ended - r.last_text for r in runs if r.last_text is not None and r.ended is not None]
    total_tokens = sum(reference[(r.round, r.prompt)].completion_tokens for r in runs)
    wall = sum((r.ended - r.started) for r in runs)
    return {
        "label": label,
        "runs": len(runs),
        "completion_tokens": total_tokens,
        "tokens_per_s": round(tokens / window, 2) if window else None,
        "ttft_ms_median": ms(statistics.median(ttfts)) if ttfts else None,
        "ttft_ms_mean": ms(statistics.fmean(ttfts)) if ttfts else None,
        "ttft_added_ms_median": ms(statistics.median(added)) if added else None,
        "ttft_added_ms_mean": ms(statistics.fmean(added)) if added else None,
        # From the last text to the end of the stream: held-back stop tokens, and for a chat turn
        # the capture and the interaction log.
        "last_text_to_end_ms_median": ms(statistics.median(tails)) if tails else None,
        "end_to_end_tokens_per_s": round(total_tokens / wall, 2) if wall else None,
        "identical_outputs": identical,
    }


def with_ratios(summary: dict, reference: dict) -> dict:
    summary["tokens_per_s_ratio"] = ratio(summary["tokens_per_s"], reference["tokens_per_s"])
    summary["ttft_ratio"] = ratio(summary["ttft_ms_median"], reference["ttft_ms_median"])
    return summary


def interleave(options: Options, sides: dict[str, Callable[[Run, str], Run]]) -> dict[str, list[Run]]:
    """Warm up every side, then run each prompt on every side in turn, rotating who goes first."""
    prompts = prompt_set(options)
    for name, side in sides.items():
        side(Run(name, -1, -1, now()), WARM_UP)
    runs: dict[str, list[Run]] = {name: [] for name in sides}
    names = list(sides)
    for round_ in range(options.rounds):
        for index, prompt in enumerate(prompts):
            shift = (round_ * len(prompts) + index) % len(names)
            for name in names[shift:] + names[:shift]:
                runs[name].append(sides[name](Run(name, index, round_, now()), prompt))
    return runs


def measure_in_process(options: Options) -> dict:
    """(a) raw token loop, (a') create_completion, (b) engine, (c) full chat turn."""
    from gemma_chat.accounts import auth
    from gemma_chat.store.db import close_database
    from gemma_chat.inference.engine import Engine
    from gemma_chat.ops.startup import open_data_dir

    data_dir = options.work_dir / "generation-data"
    # (b) runs on tier "mini", (c) on tier "pro": two resident copies of the same model, so that
    # each side's prompt cache sees the same sequence of prompts.
    tiers = {
        "mini": bench_tier("mini", options.model, options.max_tokens, n_threads=options.n_threads),
        "pro": bench_tier("pro", options.model, options.max_tokens, n_threads=options.n_threads),
    }
    settings = bench_settings(data_dir, tiers, starting_balance=1_000_000)
    open_data_dir(settings)
    user = auth.register_user(settings, "bench", "bench-password")
    options.say("  loading the engine (two copies of the model) and a raw Llama…")
    engine = Engine.load(settings, log=lambda line: None)
    try:
        statuses = {s.tier: s for s in engine.tiers()}
        if not all(s.available for s in statuses.values()):
            raise RuntimeError(f"the benchmark model did not load: {[s.reason for s in statuses.values()]}")
        # Raw loads with the extra CPU buffer types the workers use (on where they work), so only the machinery differs.
        extra_buffers = engine.extra_buffers.enabled if engine.extra_buffers is not None else True
        llama_runner.set_extra_buffers(extra_buffers)
        raw_llama = load_raw_llama(options.model, statuses["mini"].n_ctx, options.n_threads)
        try:
            raw = RawSide(raw_llama, tiers["mini"])
            raw_completion = RawSide(load_raw_llama(options.model, statuses["mini"].n_ctx, options.n_threads), tiers["mini"])
            try:
                sides = {
                    "a_raw": raw.token_loop,
                    "a_completion": raw_completion.completion_stream,
                    "b_engine": lambda run, message: engine_run(engine, "mini", run, message),
                    "c_turn": lambda run, message: turn_run(settings, engine, user.id, "pro", run, message),
                }
                runs = interleave(options, sides)
            finally:
                raw_completion.llama.close()
            sampling = raw.sampling
            prompt_tokens = {i: len(raw.tokens(p)) for i, p in enumerate(prompt_set(options))}
        finally:
            raw_llama.close()
    finally:
        engine.close()
        close_database()

    reference = {(r.round, r.prompt): r for r in runs["a_raw"]}
    labels = {
        "a_raw": "(a) raw llama-cpp-python: Llama.generate token loop",
        "a_completion": "(a') raw llama-cpp-python: create_completion(stream=True)",
        "b_engine": "(b) our engine, a worker process: Engine.generate",
        "c_turn": "(c) full chat turn through the worker: run_turn (session, hold, stream, capture, log)",
    }
    summaries = {name: summarize(side_runs, reference, labels[name]) for name, side_runs in runs.items()}
    for name in ("a_completion", "b_engine", "c_turn"):
        with_ratios(summaries[name], summaries["a_raw"])
    with_ratios(summaries["a_raw"], summaries["a_raw"])
    return {
        "model": str(options.model),
        "max_tokens": options.max_tokens,
        "n_threads": options.n_threads or physical_cores(),
        "extra_buffers": extra_buffers,
        "sampling": sampling,
        "prompts": prompt_set(options),
        "prompt_tokens": prompt_tokens,
        "completion_tokens_per_prompt": {r.prompt: r.completion_tokens for r in runs["a_raw"] if r.round == 0},
        "rounds": options.rounds,
        "sides": summaries,
        "runs": {name: [_run_row(r) for r in side_runs] for name, side_runs in runs.items()},
    }


def _run_row(run: Run) -> dict:
    return {
        "prompt": run.prompt,
        "round": run.round,
        "ttft_ms": ms(run.ttft),
        "window_ms": ms(run.window),
        "total_ms": ms(run.ended - run.started) if run.ended else None,
        "last_text_to_end_ms": ms(run.ended - run.last_text) if run.ended and run.last_text else None,
        "completion_tokens": run.completion_tokens,
        "finish": run.finish,
        **run.extra,
    }


def iter_prompts(options: Options) -> Iterator[tuple[int, int, str]]:
    for round_ in range(options.rounds):
        for index, prompt in enumerate(prompt_set(options)):
            yield round_, index, prompt
