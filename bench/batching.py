"""Many users on one tier: the app's continuous batching and prompt cache against llama.cpp's own.

The app runs as a subprocess with one tier of `parallel` 8 slots serving the benchmark model at
temperature 0; clients stream through /v1 (httpx, SSE, include_usage) from threads. The reference
is llama.cpp's `llama-batched-bench`, built once from the llama.cpp the installed llama-cpp-python
vendors (bench/llama_tools.py), on the same model, threads, prompt length (128) and answer length
(64), with flash attention off and weight repacking off when the app's extra buffers are off.
Measured:
- aggregate decode tokens/s at 1, 2, 4, 8 concurrent streams vs batched-bench's S_TG at the same count,
  and vs llama-server `-np N` streaming the same prompts through its own HTTP API (/completion);
- one stream against raw llama-cpp-python (Llama.generate) in this process, same prompt;
- a new request's TTFT while 3 others stream vs its TTFT on an idle tier (+ 2 of their decode steps);
- a streaming user's p95 gap between tokens while another user's ~3,000-token prompt is prefilled;
- two long chats (≥ 1,500 tokens) taking turns: the 2nd turn's TTFT / the 1st's;
- the prompt cache, in this process through Engine.generate (its GenerationResult carries the
  worker's per-request counters, which /v1 does not expose): 8 long chats over a tier of 4 slots
  (half of them evicted to RAM at any time), 2nd turn TTFT / 1st; and a chat past its context,
  the mean TTFT of the 10 turns after the first cut / a full prefill of a prompt as long.
--quick measures 1 and 2 streams only, uses llama-batched-bench only when already built and
skips llama-server and the prompt-cache runs.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import statistics
import subprocess
import threading

import httpx

from .app import AppProcess, app_environment, free_port
from .common import Options, ms, now, percentile, ratio
from .llama_tools import build_tools, tool_path

PROMPT_TOKENS, ANSWER_TOKENS = 128, 64
# A base model keeps counting: every stream runs its whole ANSWER_TOKENS, as batched-bench's do.
COUNTING = "Count from one to two hundred in words, separated by commas"


def _words(count: int, seed: int) -> str:
    vocabulary = "river stone lantern orchard copper meadow violin harbor thunder pepper glacier saddle".split()
    rng = random.Random(seed)
    return " ".join(rng.choice(vocabulary) for _ in range(count))


class V1:
    """Streaming /v1 chat completions; each call returns its token times and usage."""

    def __init__(self, app: AppProcess, key: str):
        self.url = app.url + "v1/chat/completions"
        self.client = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=600)

    def stream(self, messages, max_tokens: int = ANSWER_TOKENS) -> dict:
        body = {"model": "mini", "stream": True, "stream_options": {"include_usage": True},
                "messages": messages, "max_tokens": max_tokens}  # fmt: skip
        started, stamps, usage, text = now(), [], None, ""
        with self.client.stream("POST", self.url, json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                usage = chunk.get("usage") or usage
                content = "".join(c["delta"].get("content") or "" for c in chunk.get("choices", []))
                if content:
                    stamps.append(now())
                    text += content
        return {"started": started, "stamps": stamps, "usage": usage or {}, "text": text}

    def together(self, conversations: list[list[dict]], max_tokens: int = ANSWER_TOKENS) -> list[dict]:
        results: list = [None] * len(conversations)

        def one(index: int) -> None:
            results[index] = self.stream(conversations[index], max_tokens)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(conversations))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results


def _aggregate_decode_rate(results: list[dict]) -> float:
    """Tokens after each stream's first, over the span from the first first token to the last token."""
    tokens = sum(max(0, r["usage"].get("completion_tokens", 0) - 1) for r in results)
    span = max(r["stamps"][-1] for r in results) - min(r["stamps"][0] for r in results)
    return tokens / span if span > 0 else 0.0


def _batched_bench(model, threads: int, counts: list[int], no_repack: bool) -> dict:
    """llama-batched-bench's S_TG (generation tokens/s, all sequences) per sequence count."""
    binary = tool_path("llama-batched-bench")
    command = [str(binary), "-m", str(model), "-c", str((PROMPT_TOKENS + ANSWER_TOKENS) * max(counts) + 256),
               "-b", "2048", "-ub", "512", "-npp", str(PROMPT_TOKENS), "-ntg", str(ANSWER_TOKENS),
               "-npl", ",".join(map(str, counts)), "-t", str(threads), "-fa", "off"]  # fmt: skip
    if no_repack:
        command.append("-nr")
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    rows = {}
    for line in (done.stdout + done.stderr).splitlines():  # the table goes to llama.cpp's log
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and all(re.fullmatch(r"[\d.]+", c) for c in cells[:8]):
            rows[int(cells[2])] = {"s_pp": float(cells[5]), "s_tg": float(cells[7])}
    if not rows:
        raise RuntimeError(f"llama-batched-bench printed no table: {done.stdout[-800:]} {done.stderr[-800:]}")
    return {"command": " ".join(command), "rows": rows}


def _raw_single_stream(model, threads: int, prompt: str, extra_buffers: bool) -> float:
    """Raw llama-cpp-python decode tokens/s for the same prompt and answer length, greedy."""
    from gemma_chat.backends import llama_runner
    from gemma_chat.backends.prompts import transcript_prompt

    from .generation import load_raw_llama

    llama_runner.set_extra_buffers(extra_buffers)
    llama = load_raw_llama(model, 4096, threads)
    try:
        tokens = llama.tokenize(transcript_prompt([{"role": "user", "content": prompt}]).encode(), add_bos=True)
        stamps = []
        for _ in llama.generate(tokens, temp=0.0, repeat_penalty=1.1, top_k=64, top_p=0.95, min_p=0.05):
            stamps.append(now())
            if len(stamps) == ANSWER_TOKENS:
                break
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])
    finally:
        llama.close()


def _api_key(app: AppProcess) -> str:
    from .http import _api_key as make_key

    registered = httpx.post(app.url + "auth/register", json={"username": "bench", "password": "bench-password"}, timeout=60)
    if registered.status_code != 200:
        raise RuntimeError(f"could not register the benchmark user: {registered.status_code} {registered.text}")
    return make_key(app)


def measure_batching(options: Options) -> dict:
    from gemma_chat.config import physical_cores

    threads = options.n_threads or physical_cores()
    counts = [1, 2] if options.quick else [1, 2, 4, 8]
    result: dict = {"threads": threads, "prompt_tokens": PROMPT_TOKENS, "answer_tokens": ANSWER_TOKENS}
    if options.quick and tool_path("llama-batched-bench") is None:
        tools, why = None, "not built yet (python -m bench.llama_tools builds it; --quick never builds)"
    else:
        tools, why = build_tools(options.say, names=("llama-batched-bench",))
    result["reference_note"] = why

    data_dir = options.work_dir / "batching-data"
    tier = {"model_file": str(options.model), "max_tokens": 512, "temperature": 0, "required_quantization": "",
            "n_threads": threads, "parallel": max(counts) if not options.quick else 4, "n_ctx": 4096,
            "prompt_cache_mb": 512}  # fmt: skip
    env = app_environment(data_dir, {"mini": tier}, GEMMA_CHAT_STARTING_BALANCE="1000000",
                          GEMMA_CHAT_API_RATE_PER_MINUTE="1000000", GEMMA_CHAT_PRO_BACKEND="openai",
                          # the ~3,000-token prompt is one message of ~19,000 characters (default limit 8,000)
                          GEMMA_CHAT_MAX_MESSAGE_CHARS="24000",
                          GEMMA_CHAT_PRO_BASE_URL="http://127.0.0.1:9/v1")  # fmt: skip
    options.say(f"  starting the app (mini: {tier['parallel']} slots)…")
    app = AppProcess(data_dir, env, options.work_dir / "batching-app.log")
    try:
        app.wait_until_up()
        extra_off = any("extra buffers" in line.lower() and " off" in line.lower() for _, line in app.lines)
        v1 = V1(app, _api_key(app))
        # prompts of about PROMPT_TOKENS tokens with the transcript's preamble, one per stream
        prompts = [f"{COUNTING} ({_words(20, seed)})." for seed in range(max(counts))]
        v1.stream([{"role": "user", "content": "How many days are in a week?"}], 8)  # warm up

        streams = {}
        for count in counts:
            runs = v1.together([[{"role": "user", "content": p}] for p in prompts[:count]])
            streams[count] = {
                "aggregate_tokens_per_s": round(_aggregate_decode_rate(runs), 1),
                "completion_tokens": [r["usage"].get("completion_tokens") for r in runs],
                "ttft_ms": [ms(r["stamps"][0] - r["started"]) for r in runs],
            }
            options.say(f"  {count} stream(s): {streams[count]['aggregate_tokens_per_s']} tok/s")
        result["streams"] = streams
        result["raw_single_stream_tokens_per_s"] = round(_raw_single_stream(options.model, threads, prompts[0], not extra_off), 1)
        result["one_stream_vs_raw"] = ratio(streams[1]["aggregate_tokens_per_s"], result["raw_single_stream_tokens_per_s"])

        # TTFT of a new request while 3 others stream, against a like request on an idle tier. Each
        # question is new (a different country), so none finds its prompt cached in a slot.
        countries = ("France", "Peru", "Japan", "Kenya", "Norway", "Chile")
        idle = []
        for country in countries[:3]:
            run = v1.stream([{"role": "user", "content": f"What is the capital of {country}?"}], 8)
            idle.append(run["stamps"][0] - run["started"])
        loaded, steps = [], []
        for country in countries[3:]:
            background_runs: list = []
            background = threading.Thread(target=lambda: background_runs.extend(
                v1.together([[{"role": "user", "content": p}] for p in prompts[:3]], 128)))
            background.start()
            threading.Event().wait(1.0)  # the three are streaming
            run = v1.stream([{"role": "user", "content": f"What is the capital of {country}?"}], 8)
            loaded.append(run["stamps"][0] - run["started"])
            background.join()
            steps += [b - a for r in background_runs for a, b in zip(r["stamps"], r["stamps"][1:])]
        result["ttft_idle_ms"] = ms(sorted(idle)[1])
        result["ttft_with_3_streaming_ms"] = ms(sorted(loaded)[1])
        # a decode step with 3 (then 4) streams: the median gap between the background streams' tokens
        result["decode_step_with_3_streaming_ms"] = ms(statistics.median(steps)) if steps else None
        if steps:
            limit = sorted(idle)[1] + 2 * statistics.median(steps)
            result["ttft_limit_ms"] = ms(limit)
            result["ttft_with_3_streaming_within_limit"] = sorted(loaded)[1] <= limit

        if not options.quick:
            result["prefill_gap"] = _gap_during_long_prefill(v1, prompts[0])
            result["two_long_chats"] = _two_long_chats(v1)
    finally:
        app.stop()

    server, result["llama_server_note"] = None, "not run with --quick"
    if not options.quick:  # a failed build is recorded and the section goes on
        server, result["llama_server_note"] = build_tools(options.say, names=("llama-server",))
    if server is not None:
        try:
            result["llama_server"] = _llama_server_streams(options, threads, counts, prompts, extra_off)
        except (OSError, httpx.HTTPError, ValueError) as exc:  # the reference failing keeps our figures
            result["llama_server"] = {"error": f"{type(exc).__name__}: {exc}"}
        for count, figures in result["streams"].items():
            theirs = _get_rate(result["llama_server"], count)
            figures["llama_server_tokens_per_s"] = theirs
            figures["vs_llama_server"] = ratio(figures["aggregate_tokens_per_s"], theirs)
    if not options.quick:
        try:
            result["prompt_cache"] = _prompt_cache(options, threads)
        except Exception as exc:  # noqa: BLE001 — the streams' figures above must not be lost with it
            result["prompt_cache"] = {"error": f"{type(exc).__name__}: {exc}"}

    if tools is not None:
        try:
            reference = _batched_bench(options.model, threads, counts, extra_off)
            result["llama_batched_bench"] = reference
            base = reference["rows"].get(1, {}).get("s_tg")
            for count, figures in result["streams"].items():
                s_tg = reference["rows"].get(count, {}).get("s_tg")
                figures["llama_batched_bench_s_tg"] = s_tg
                figures["vs_s_tg"] = ratio(figures["aggregate_tokens_per_s"], s_tg)
                figures["llama_speedup_vs_1"] = ratio(s_tg, base)
            ours_1 = result["streams"][1]["aggregate_tokens_per_s"]
            for count, figures in result["streams"].items():
                figures["speedup_vs_1"] = ratio(figures["aggregate_tokens_per_s"], ours_1)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            result["reference_note"] = f"llama-batched-bench failed: {exc}"
    return result


def _gap_during_long_prefill(v1: V1, prompt: str) -> dict:
    """p95 gap between a streaming user's tokens, idle and while a ~3,000-token prompt is prefilled."""
    idle = v1.stream([{"role": "user", "content": prompt}], 128)
    gaps_idle = [b - a for a, b in zip(idle["stamps"], idle["stamps"][1:])]
    long_prompt = [{"role": "user", "content": _words(2850, 99) + "?"}]  # one token a word, + the preamble
    results: dict = {}

    def stream() -> None:
        results["stream"] = v1.stream([{"role": "user", "content": prompt}], 256)

    def prefill() -> None:
        try:
            results["long"] = v1.stream(long_prompt, 4)
        except httpx.HTTPError as exc:  # recorded below; the streaming user's figures are still read
            results["long_error"] = f"{exc}: {getattr(getattr(exc, 'response', None), 'text', '')[:300]}"

    streaming = threading.Thread(target=stream)
    streaming.start()
    threading.Event().wait(1.0)
    prefilling = threading.Thread(target=prefill)
    prefilling.start()
    prefilling.join()
    streaming.join()
    if "long" not in results:
        return {"error": results.get("long_error", "the long prompt's request failed"),
                "idle_gap_p95_ms": ms(percentile(gaps_idle, 0.95))}
    long_run = results["long"]
    window = (long_run["started"], long_run["stamps"][0] if long_run["stamps"] else now())
    stamps = results["stream"]["stamps"]
    during = [b - a for a, b in zip(stamps, stamps[1:]) if window[0] <= b <= window[1]]
    return {
        "idle_gap_p95_ms": ms(percentile(gaps_idle, 0.95)),
        "gap_p95_during_prefill_ms": ms(percentile(during, 0.95)) if during else None,
        "ratio": ratio(percentile(during, 0.95), percentile(gaps_idle, 0.95)) if during else None,
        "long_prompt_ttft_ms": ms(window[1] - window[0]),
        "long_prompt_tokens": long_run["usage"].get("prompt_tokens"),
    }


def _two_long_chats(v1: V1) -> dict:
    """Two chats with ≥ 1,500-token histories take turns: the 2nd turn of each starts from its cache."""
    chats = []
    for seed in (7, 8):
        history = []
        for turn in range(12):
            history += [{"role": "user", "content": f"Note {turn}: {_words(60, seed * 100 + turn)}."},
                        {"role": "assistant", "content": f"Noted {turn}: {_words(60, seed * 1000 + turn)}."}]  # fmt: skip
        chats.append(history)
    first, second = [], []
    for history in chats:
        run = v1.stream(history + [{"role": "user", "content": "Which note mentions a violin?"}], 16)
        first.append((run["stamps"][0] - run["started"], run["usage"].get("prompt_tokens"), run["text"]))
    for history, (_, _, answer) in zip(chats, first):
        follow = history + [{"role": "user", "content": "Which note mentions a violin?"},
                            {"role": "assistant", "content": answer}, {"role": "user", "content": "And a harbor?"}]  # fmt: skip
        run = v1.stream(follow, 16)
        second.append(run["stamps"][0] - run["started"])
    return {
        "prompt_tokens": [p for _, p, _ in first],
        "first_turn_ttft_ms": [ms(t) for t, _, _ in first],
        "second_turn_ttft_ms": [ms(t) for t in second],
        "ratio": ratio(sum(second), sum(t for t, _, _ in first)),
    }


def _get_rate(server_result: dict, count: int) -> float | None:
    return ((server_result.get("streams") or {}).get(count) or {}).get("aggregate_tokens_per_s")


def _completion_stream(client: httpx.Client, url: str, prompt: str) -> dict:
    """One streamed /completion from llama-server: its token times, as V1.stream's."""
    body = {"prompt": prompt, "n_predict": ANSWER_TOKENS, "stream": True, "temperature": 0, "ignore_eos": True,
            "cache_prompt": True}  # fmt: skip
    started, stamps, predicted = now(), [], None
    with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("content"):
                stamps.append(now())
            predicted = (chunk.get("timings") or {}).get("predicted_n", predicted)
    return {"started": started, "stamps": stamps, "usage": {"completion_tokens": predicted or len(stamps)}}


def _llama_server_streams(options: Options, threads: int, counts: list[int], prompts: list[str], no_repack: bool) -> dict:
    """llama-server `-np N`, the same model, threads and prompts (our transcript format, so the same
    tokens), N streams at once through its own HTTP API; one server per N, as a user would run it."""
    from gemma_chat.backends.prompts import transcript_prompt

    texts = [transcript_prompt([{"role": "user", "content": p}]) for p in prompts]
    binary, streams = tool_path("llama-server"), {}
    log_path = options.work_dir / "llama-server.log"
    for count in counts:
        port = free_port()
        command = [str(binary), "-m", str(options.model), "-np", str(count), "-c", str(1024 * count), "-t", str(threads),
                   "-tb", str(threads), "-b", "2048", "-ub", "512", "-fa", "off", "--host", "127.0.0.1",
                   "--port", str(port)]  # fmt: skip
        if no_repack:
            command.append("-nr")
        with open(log_path, "a") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/"
            client = httpx.Client(timeout=600)
            began = now()
            while True:
                if process.poll() is not None:
                    tail = log_path.read_text()[-600:]
                    return {"command": " ".join(command), "streams": streams,
                            "error": f"llama-server -np {count} exited with {process.returncode}: {tail}"}
                try:
                    if client.get(url + "health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if now() - began > 120:
                    return {"command": " ".join(command), "streams": streams, "error": "llama-server did not answer in 120 s"}
                threading.Event().wait(0.2)
            _completion_stream(client, url + "completion", texts[0])  # warm up
            runs: list = [None] * count

            def one(index: int) -> None:
                runs[index] = _completion_stream(client, url + "completion", texts[index])

            threads_ = [threading.Thread(target=one, args=(i,)) for i in range(count)]
            for thread in threads_:
                thread.start()
            for thread in threads_:
                thread.join()
            streams[count] = {"aggregate_tokens_per_s": round(_aggregate_decode_rate(runs), 1),
                              "completion_tokens": [r["usage"]["completion_tokens"] for r in runs]}  # fmt: skip
            options.say(f"  llama-server -np {count}: {streams[count]['aggregate_tokens_per_s']} tok/s")
            client.close()
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    return {"command": " ".join(command), "streams": streams}


def _note_chat(seed: int, turns: int, words: int) -> list[dict]:
    history = []
    for turn in range(turns):
        history += [{"role": "user", "content": f"Note {turn}: {_words(words, seed * 100 + turn)}."},
                    {"role": "assistant", "content": f"Noted {turn}: {_words(words, seed * 1000 + turn)}."}]  # fmt: skip
    return history


def _engine_turn(engine, tier: str, messages: list[dict], max_tokens: int = 16) -> dict:
    """One turn through Engine.generate: TTFT seen by the caller, and the worker's counters."""
    from gemma_chat.backends.base import GenerationResult, Sampling

    started, first, result = now(), None, None
    for item in engine.generate(tier, messages, sampling=Sampling(max_tokens=max_tokens)):
        if isinstance(item, str) and first is None:
            first = now()
        elif isinstance(item, GenerationResult):
            result = item
    return {
        "ttft_ms": ms((first or now()) - started), "text": result.text, "prompt_tokens": result.prompt_tokens,
        "cache": result.cache, "prompt_tokens_reused": result.prompt_tokens_reused,
        "prompt_tokens_prefilled": result.prompt_tokens - result.prompt_tokens_reused,
    }


def _prompt_cache(options: Options, threads: int) -> dict:
    """The prompt cache's two harder cases, on our engine in this process (two worker processes)."""
    from gemma_chat.inference.engine import Engine
    from gemma_chat.ops.startup import open_data_dir

    from .generation import bench_settings, bench_tier

    # "slots": 4 slots of 4,096 tokens, RAM enough for all 8 chats; "short": 2,048 tokens, so a chat
    # passes its context in a dozen turns.
    tiers = {
        "slots": dataclasses.replace(bench_tier("slots", options.model, 64, n_threads=threads), parallel=4, n_ctx=4096,
                                     prompt_cache_mb=512),
        "short": dataclasses.replace(bench_tier("short", options.model, 64, n_threads=threads), parallel=2, n_ctx=2048,
                                     prompt_cache_mb=256),
    }
    settings = bench_settings(options.work_dir / "prompt-cache-data", tiers)
    open_data_dir(settings)
    options.say("  prompt cache: loading two tiers in this process (4 slots of 4,096; 2 slots of 2,048)…")
    engine = Engine.load(settings, log=lambda line: None)
    try:
        return {"eight_chats_four_slots": _eight_chats(engine, options), "past_context": _past_context(engine, options)}
    finally:
        engine.close()


def _eight_chats(engine, options: Options) -> dict:
    """8 chats of ≥ 1,500 tokens take turns on 4 slots: every 2nd turn finds its chat evicted to RAM."""
    chats = [_note_chat(seed, 12, 60) for seed in range(20, 28)]
    question = {"role": "user", "content": "Which note mentions a violin?"}
    first = [_engine_turn(engine, "slots", history + [question]) for history in chats]
    second = []
    for history, earlier in zip(chats, first):
        follow = history + [question, {"role": "assistant", "content": earlier["text"]},
                            {"role": "user", "content": "And a harbor?"}]  # fmt: skip
        second.append(_engine_turn(engine, "slots", follow))
    figures = {
        "first_turns": [{k: v for k, v in t.items() if k != "text"} for t in first],
        "second_turns": [{k: v for k, v in t.items() if k != "text"} for t in second],
        "ratio": ratio(sum(t["ttft_ms"] for t in second), sum(t["ttft_ms"] for t in first)),
        "second_turn_cache": [t["cache"] for t in second],
    }
    options.say(f"  8 chats over 4 slots: 2nd turn TTFT / 1st x{figures['ratio']}, caches {figures['second_turn_cache']}")
    return figures


def _past_context(engine, options: Options) -> dict:
    """A chat grows past its 2,048-token context; the next 10 turns against a full prefill each."""
    history: list[dict] = []
    turns, cut = [], None
    for turn in range(60):
        history.append({"role": "user", "content": f"Note {turn}: {_words(70, 5000 + turn)}. Repeat the first word."})
        run = _engine_turn(engine, "short", history)
        history.append({"role": "assistant", "content": run["text"]})
        if cut is None and turns and run["prompt_tokens"] < turns[-1]["prompt_tokens"]:
            cut = len(turns)  # this turn is the first whose older turns were cut
        turns.append({k: v for k, v in run.items() if k != "text"})
        if cut is not None and len(turns) >= cut + 11:
            break
    after = turns[cut + 1:cut + 11] if cut is not None else []
    # A full re-prefill of a prompt as long: the same turns with every word new, twice, so nothing is cached.
    full = []
    for k in range(2):
        fresh = [{"role": m["role"], "content": _words(len(m["content"].split()), 9000 + 1000 * k + i)}
                 for i, m in enumerate(history[:-1])]  # fmt: skip
        full.append(_engine_turn(engine, "short", fresh))  # fit() cuts it as it cut the chat
    mean_after = statistics.mean(t["ttft_ms"] for t in after) if after else None
    full_ttft = statistics.mean(t["ttft_ms"] for t in full)
    figures = {
        "n_ctx": 2048, "turns_until_cut": cut, "turns": turns, "after_cut": after,
        "mean_ttft_after_cut_ms": round(mean_after, 2) if mean_after is not None else None,
        "full_prefill": [{k: v for k, v in t.items() if k != "text"} for t in full],
        "full_prefill_ttft_ms": round(full_ttft, 2),
        "ratio": ratio(mean_after, full_ttft),
    }
    options.say(f"  past the context: mean TTFT of 10 turns after the cut {figures['mean_ttft_after_cut_ms']} ms, "
                f"full prefill {figures['full_prefill_ttft_ms']} ms")
    return figures
