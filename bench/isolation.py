"""Isolation: time to first token on mini while pro is generating, against mini idle.

Each tier has its own model and lock, so mini never waits for pro; what remains is the machine:
both models' threads share the same cores. Two raw Llama objects in two threads, doing the same,
show that limit.
"""

from __future__ import annotations

import statistics
import threading

from .common import Options, ms, now
from .generation import RawSide, Run, bench_settings, bench_tier, load_raw_llama

QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What colour is the sky on a clear day?",
    "Which planet is closest to the sun?",
    "What do bees make?",
    "How many minutes are in an hour?",
]
BACKGROUND = "Keep counting without stopping: 1, 2, 3, 4, 5, 6, 7, 8,"
WARM_UP = "How many days are in a week?"
BACKGROUND_MAX_TOKENS = 2048  # the pro stream restarts when it ends, until it is stopped
MINI_MAX_TOKENS = 16


class Background:
    """Keeps one generator busy in a thread until stopped; `started` is set at its first token."""

    def __init__(self, generate):
        self.generate = generate
        self.stop = threading.Event()
        self.started = threading.Event()
        self.deltas = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            for _ in self.generate(self.stop):
                self.deltas += 1
                self.started.set()
                if self.stop.is_set():
                    break

    def __enter__(self):
        self.thread.start()
        if not self.started.wait(120):
            raise RuntimeError("the background generation did not start")
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(60)


def _ttfts(options: Options, first_text) -> list[float]:
    questions = QUESTIONS[:3] if options.quick else QUESTIONS
    return [first_text(question) for question in questions]


def measure_isolation(options: Options) -> dict:
    from gemma_chat.inference.engine import Engine

    tiers = {
        "mini": bench_tier("mini", options.model, MINI_MAX_TOKENS, n_threads=options.n_threads),
        "pro": bench_tier("pro", options.pro_model, BACKGROUND_MAX_TOKENS, n_threads=options.n_threads),
    }
    settings = bench_settings(options.work_dir / "isolation-data", tiers)
    options.say("  engine: mini idle, then mini while pro streams…")
    engine = Engine.load(settings, log=lambda line: None)
    try:
        if not all(s.available for s in engine.tiers()):
            raise RuntimeError(f"isolation models did not load: {[s.reason for s in engine.tiers()]}")

        def engine_first_text(question: str) -> float:
            started = now()
            generation = engine.generate("mini", [{"role": "user", "content": question}])
            try:
                for item in generation:
                    if isinstance(item, str):
                        return now() - started
            finally:
                generation.close()
            raise RuntimeError("mini produced no text")

        def pro_stream(stop):
            for item in engine.generate("pro", [{"role": "user", "content": BACKGROUND}], stop=stop):
                if isinstance(item, str):
                    yield item

        engine_first_text(WARM_UP)
        engine_idle = _ttfts(options, engine_first_text)
        with Background(pro_stream) as background:
            engine_busy = _ttfts(options, engine_first_text)
        engine_pro_deltas = background.deltas
    finally:
        engine.close()

    options.say("  raw llama-cpp-python: the same with two Llama objects in two threads…")
    mini_raw = RawSide(load_raw_llama(options.model, 4096, options.n_threads), tiers["mini"])
    pro_raw = RawSide(load_raw_llama(options.pro_model, 4096, options.n_threads), tiers["pro"])
    try:
        def raw_first_text(question: str) -> float:
            run = Run("raw", 0, 0, now())
            tokens = mini_raw.tokens(question)
            run.started = now()
            stream = mini_raw.llama.generate(tokens, **mini_raw.sampling)
            try:
                next(stream)
                return now() - run.started
            finally:
                stream.close()

        def raw_pro_stream(stop):
            stream = pro_raw.llama.generate(pro_raw.tokens(BACKGROUND), **pro_raw.sampling)
            try:
                for count, token in enumerate(stream):
                    yield token
                    if stop.is_set() or count >= BACKGROUND_MAX_TOKENS:
                        break
            finally:
                stream.close()

        raw_first_text(WARM_UP)
        raw_idle = _ttfts(options, raw_first_text)
        with Background(raw_pro_stream):
            raw_busy = _ttfts(options, raw_first_text)
    finally:
        mini_raw.llama.close()
        pro_raw.llama.close()

    def med(values):
        return ms(statistics.median(values))

    return {
        "mini_model": str(options.model),
        "pro_model": str(options.pro_model),
        "questions": len(engine_idle),
        "engine": {"idle_ttft_ms": med(engine_idle), "busy_ttft_ms": med(engine_busy),
                   "slowdown": round(statistics.median(engine_busy) / statistics.median(engine_idle), 2),
                   "pro_text_deltas_meanwhile": engine_pro_deltas},
        "raw": {"idle_ttft_ms": med(raw_idle), "busy_ttft_ms": med(raw_busy),
                "slowdown": round(statistics.median(raw_busy) / statistics.median(raw_idle), 2)},
        "samples_ms": {"engine_idle": [ms(x) for x in engine_idle], "engine_busy": [ms(x) for x in engine_busy],
                       "raw_idle": [ms(x) for x in raw_idle], "raw_busy": [ms(x) for x in raw_busy]},
    }
