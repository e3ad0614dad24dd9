"""Generation through the running app's HTTP API: (d') a plain SSE reader (the requests a browser
makes), (e) the OpenAI-compatible /v1 API streamed with an API key.

The model runs in the tier's worker process, so its decode no longer competes with Gradio for the
web process's GIL; the CPU each answer costs in the web process and in the workers is recorded.

The app runs as `python main.py` in a subprocess with both tiers serving the benchmark model at
temperature 0. Raw llama-cpp-python runs in this process, taking turns with the app prompt by
prompt, so each side is compared with a reference measured at the same time. (d), gradio_client,
is gone: it needs /gradio_api/info, which the edge no longer serves (issue 21), and the SSE reader
(httpx, the same requests a browser makes) measured what gradio's queue and SSE add without its
50 ms idle sleeps anyway.
"""

from __future__ import annotations

import json
import sqlite3
import statistics

import httpx

from .app import AppProcess, app_environment
from .common import Options, ms, now
from .generation import WARM_UP, RawSide, Run, bench_tier, load_raw_llama, prompt_set, summarize, with_ratios

PLACEHOLDER = "…"  # the assistant bubble before the first text


def _answer_text(chatbot) -> str:
    """The assistant bubble's text, from gradio_client's content blocks or plain strings."""
    if not chatbot:
        return ""
    content = chatbot[-1].get("content") if isinstance(chatbot[-1], dict) else None
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return content or ""


def _has_text(chatbot) -> bool:
    text = _answer_text(chatbot)
    return bool(text) and text != PLACEHOLDER


class HttpSides:
    def __init__(self, app: AppProcess):
        from tests.reliability.gradio_http import GradioSession

        self.app = app
        # A page as the browser has it: /auth/register sets the session cookie, the page loads.
        self.page = GradioSession(app.url)
        refused = self.page.register("bench", "bench-password")
        if refused:
            raise RuntimeError(f"could not register the benchmark user: {refused}")
        deps = {d.get("api_name"): d["id"] for d in self.page.config["dependencies"]}
        self.chat_fn, self.new_chat_fn = deps["chat"], deps["new_chat"]
        self.http = self.page.http
        self.api = httpx.Client(timeout=httpx.Timeout(120.0), headers={"Authorization": f"Bearer {_api_key(app)}"})
        self.calls: list[tuple[str, int, int, str]] = []  # (side, round, prompt, tier) in the order the app ran them

    def close(self) -> None:
        self.api.close()
        self.page.close()

    # --- a plain SSE reader: POST queue/join, GET queue/data ---

    def _event(self, fn_index: int, data: list, on_message) -> None:
        session = self.page.session_hash
        joined = self.http.post(
            self.app.url + "gradio_api/queue/join",
            json={"data": data, "event_data": None, "fn_index": fn_index, "trigger_id": None, "session_hash": session},
        )
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        with self.http.stream("GET", self.app.url + "gradio_api/queue/data", params={"session_hash": session}) as response:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") != event_id:
                    continue
                on_message(now(), message)
                if message["msg"] == "process_completed":
                    if not message.get("success", True):
                        raise RuntimeError(f"the app failed: {message}")
                    return

    def sse_noop(self) -> float:
        """One queued event that does nearly nothing (new_chat): gradio's own round trip."""
        started = now()
        self._event(self.new_chat_fn, [""], lambda *_: None)  # input: the sidebar's search box
        return now() - started

    def sse_chat(self, run: Run, message: str, tier: str = "pro") -> Run:
        from gradio_client.utils import apply_diff

        self._event(self.new_chat_fn, [""], lambda *_: None)  # a fresh chat: no history in the prompt
        self.calls.append((run.side, run.round, run.prompt, tier))
        state = {"outputs": None}

        def on_message(stamp, msg):
            if msg["msg"] not in ("process_generating", "process_completed"):
                return
            data = msg.get("output", {}).get("data") or []
            if msg["msg"] == "process_generating" and state["outputs"] is not None:
                data = [apply_diff(old, diff) for old, diff in zip(state["outputs"], data)]
            if msg["msg"] == "process_generating":
                state["outputs"] = data
            chatbot = state["outputs"][0] if state["outputs"] else None
            if chatbot and _has_text(chatbot):
                if run.first_text is None:
                    run.first_text = stamp
                run.last_text = stamp
            run.ended = stamp

        run.started = now()
        # inputs: model, message, chatbot, turns (State, ignored from clients), system prompt; who: the cookie
        self._event(self.chat_fn, [tier, message, [], None, ""], on_message)
        run.extra["final_bubble"] = _answer_text(state["outputs"][0]) if state["outputs"] else ""
        return run

    # --- /v1: what an editor or the openai package does ---

    def v1_chat(self, run: Run, message: str, tier: str = "pro") -> Run:
        self.calls.append((run.side, run.round, run.prompt, tier))
        body = {"model": tier, "stream": True, "messages": [{"role": "user", "content": message}]}
        run.started = now()
        with self.api.stream("POST", self.app.url + "v1/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                stamp = now()
                chunk = json.loads(line[6:])
                if any(choice["delta"].get("content") for choice in chunk.get("choices", [])):
                    if run.first_text is None:
                        run.first_text = stamp
                    run.last_text = stamp
                run.ended = stamp
        return run


def _api_key(app: AppProcess) -> str:
    """An API key for the benchmark user, made by the CLI on the app's data dir."""
    import subprocess
    import sys

    from .app import ROOT

    made = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "keys", "create", "bench", "--data-dir", str(app.data_dir)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    if made.returncode != 0:
        raise RuntimeError(f"could not make an API key: {made.stderr}")
    return made.stdout.strip()


def _app_cpu(app: AppProcess) -> dict:
    """CPU seconds (user + system) so far of the app's own process and of its model workers."""
    import psutil

    process = psutil.Process(app.process.pid)
    own = process.cpu_times()
    workers = 0.0
    for child in process.children(recursive=True):
        try:
            times = child.cpu_times()
            workers += times.user + times.system
        except psutil.Error:
            pass
    return {"web_process": own.user + own.system, "workers": workers}


def _attach_rows(app: AppProcess, calls, runs_by_key) -> None:
    """Token counts and answers from the app's own interaction log, matched in call order."""
    connection = sqlite3.connect(f"file:{app.data_dir / 'gemma_chat.db'}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT tier, status, answer, prompt_tokens, completion_tokens, ttft_ms, duration_ms FROM interactions ORDER BY id"
        ).fetchall()
    finally:
        connection.close()
    if len(rows) != len(calls):
        raise RuntimeError(f"the app logged {len(rows)} turns for {len(calls)} chat calls")
    for (side, round_, prompt, tier), (row_tier, status, answer, prompt_tokens, completion_tokens, ttft_ms, duration_ms) in zip(
        calls, rows
    ):
        if row_tier != tier or status != "ok":
            raise RuntimeError(f"unexpected turn in the app's log: {row_tier} {status}")
        run = runs_by_key.get((side, round_, prompt))
        if run is not None:
            run.text, run.prompt_tokens, run.completion_tokens = answer, prompt_tokens, completion_tokens
            run.extra["app_engine_ttft_ms"] = ttft_ms
            run.extra["app_engine_decode_ms"] = duration_ms - ttft_ms  # first token to the end, inside the app


def measure_http(options: Options) -> dict:
    data_dir = options.work_dir / "http-data"
    tier = {
        "model_file": str(options.model), "max_tokens": options.max_tokens, "temperature": 0,
        "required_quantization": "", "n_threads": options.n_threads,
    }
    env = app_environment(data_dir, {"mini": tier, "pro": tier}, GEMMA_CHAT_STARTING_BALANCE="1000000", GEMMA_CHAT_API_RATE_PER_MINUTE="1000000")
    options.say("  starting the app (both tiers serve the benchmark model) and a raw Llama…")
    app = AppProcess(data_dir, env, options.work_dir / "http-app.log")
    try:
        app.wait_until_up()
        sides = HttpSides(app)
        raw = None
        try:
            n_ctx = 4096  # the tier default the app runs with
            raw = RawSide(
                load_raw_llama(options.model, n_ctx, options.n_threads),
                bench_tier("mini", options.model, options.max_tokens, n_threads=options.n_threads),
            )
            noop_sse = [sides.sse_noop() for _ in range(5 if options.quick else 20)]
            functions = {"a_raw": raw.token_loop, "d_sse": sides.sse_chat, "e_v1": sides.v1_chat}
            for name, function in functions.items():
                function(Run(name, -1, -1, now()), WARM_UP)
            runs = {name: [] for name in functions}
            names = list(functions)
            cpu_before = _app_cpu(app)
            prompts = prompt_set(options)
            for round_ in range(options.rounds):
                for index, prompt in enumerate(prompts):
                    shift = (round_ * len(prompts) + index) % len(names)
                    for name in names[shift:] + names[:shift]:
                        runs[name].append(functions[name](Run(name, index, round_, now()), prompt))
            cpu_after = _app_cpu(app)
            _attach_rows(app, sides.calls, {(r.side, r.round, r.prompt): r for rs in runs.values() for r in rs})
        finally:
            if raw is not None:
                raw.llama.close()
            sides.close()
    finally:
        app.stop()

    reference = {(r.round, r.prompt): r for r in runs["a_raw"]}
    labels = {
        "a_raw": "(a) raw llama-cpp-python token loop, measured alongside the app",
        "d_sse": "(d') the app over HTTP: plain SSE reader (what a browser does)",
        "e_v1": "(e) the app's /v1 API, streamed (what the openai package does)",
    }
    summaries = {name: summarize(side_runs, reference, labels[name]) for name, side_runs in runs.items()}
    for name in summaries:
        with_ratios(summaries[name], summaries["a_raw"])
    engine_ttft = [r.extra.get("app_engine_ttft_ms") for r in runs["d_sse"] if r.extra.get("app_engine_ttft_ms") is not None]
    # The model's own pace inside the app (from its interaction log), against raw: what HTTP delivery adds is the rest.
    decode = {}
    for r in runs["d_sse"]:
        decode.setdefault(r.prompt, []).append(r.extra["app_engine_decode_ms"] / 1000)
    raw_decode = {}
    for r in runs["a_raw"]:
        raw_decode.setdefault(r.prompt, []).append(r.window)
    tokens = sum(max(0, reference[(0, p)].completion_tokens - 1) for p in decode)
    app_engine_rate = tokens / sum(statistics.median(v) for v in decode.values())
    raw_rate = tokens / sum(statistics.median(v) for v in raw_decode.values())
    answers = len(runs["d_sse"])
    return {
        "sides": summaries,
        # CPU seconds per answer through the app's page events, over the measured rounds:
        # the web process (Gradio, billing, the pipe reader) and the tiers' worker processes (the model).
        "cpu_s_per_answer": {
            part: round((cpu_after[part] - cpu_before[part]) / answers, 4) for part in ("web_process", "workers")
        },
        "gradio_noop_event_ms": {
            "sse_median": ms(statistics.median(noop_sse)),
        },
        "app_engine_ttft_ms_median": statistics.median(engine_ttft) if engine_ttft else None,
        "app_engine_tokens_per_s": round(app_engine_rate, 2),
        "app_engine_tokens_per_s_ratio": round(app_engine_rate / raw_rate, 3),
        "runs": {
            name: [
                {"prompt": r.prompt, "round": r.round, "ttft_ms": ms(r.ttft), "window_ms": ms(r.window),
                 "completion_tokens": r.completion_tokens, **{k: v for k, v in r.extra.items() if k != "final_bubble"}}
                for r in side_runs
            ]
            for name, side_runs in runs.items()
        },
    }
