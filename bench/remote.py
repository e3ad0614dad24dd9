"""A remote tier (backend = "openai") over loopback against the same server called directly.

`python -m llama_cpp.server` serves the bundled 270M (extra CPU buffers off, as the tests run it;
--interrupt_requests False, as the docs say to run it for several users). (a) a plain httpx client
streams POST /v1/completions with exactly the body our backend sends for api = "completions" (the
transcript prompt, its stop strings and sampling, greedy); (b) Engine.generate on a tier with
backend = "openai"; (c) a full chat turn on that tier. The sides take turns prompt by prompt. The
server keeps one prompt prefix cache, so before every measured request a one-token request of a
fixed prompt puts that cache in the same state for whichever side goes next.

The server gets one thread (--n_threads 1) and, on Linux, a core of its own (the last one; the
measuring process keeps the others for the section): it stands in for another machine, so the
client's threads never preempt the model's thread, whichever side is measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx

from gemma_chat.backends.prompts import TRANSCRIPT_SAMPLING, TRANSCRIPT_STOP, transcript_prompt
from gemma_chat.config import TierSettings

from .app import free_port
from .common import ROOT, Options, ms, now
from .generation import Run, bench_settings, engine_run, interleave, prompt_set, summarize, turn_run, with_ratios

N_CTX = 2048
SERVER_THREADS = 1
CACHE_RESET = [{"role": "user", "content": "Hi"}]

# `python -m llama_cpp.server` with llama.cpp's extra CPU buffer types off (tests/test_openai_backend.py
# does the same: on an AMX Xeon they crash on the first token).
SERVER_WITHOUT_EXTRA_BUFFERS = """
import runpy, sys
from gemma_chat.backends.llama_runner import set_extra_buffers
set_extra_buffers(False)
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


# The server's own core and the measuring process's others (None: one core, or no affinity calls).
_CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SERVER_CORE = _CORES[-1] if len(_CORES) >= 2 else None


class Server:
    def __init__(self, model, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        command = [
            sys.executable, "-c", SERVER_WITHOUT_EXTRA_BUFFERS, "--model", str(model), "--host", "127.0.0.1",
            "--port", str(self.port), "--interrupt_requests", "False", "--n_ctx", str(N_CTX),
            "--n_threads", str(SERVER_THREADS), "--n_threads_batch", str(SERVER_THREADS),
        ]
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=(lambda: os.sched_setaffinity(0, {SERVER_CORE})) if SERVER_CORE is not None else None,
            )

    def wait_until_up(self, timeout: float = 120) -> float:
        started = now()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.process.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    return now() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"llama_cpp.server did not answer in {timeout:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def request_body(message: str, max_tokens: int, model: str) -> dict:
    """What OpenAIBackend sends for api = "completions", a tier temperature of 0 and a one-message chat."""
    sampling = dict(TRANSCRIPT_SAMPLING)
    sampling.pop("temp")
    return {
        "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True}, "model": model,
        "prompt": transcript_prompt([{"role": "user", "content": message}]), "stop": TRANSCRIPT_STOP,
        "temperature": 0.0, **sampling,
    }


class DirectSide:
    """A plain httpx client streaming /v1/completions: the least any client of this server does."""

    def __init__(self, server: Server, max_tokens: int):
        self.server = server
        self.max_tokens = max_tokens
        self.http = httpx.Client(timeout=httpx.Timeout(120.0))
        self.model = self.http.get(f"{server.url}/models").json()["data"][0]["id"]

    def reset_cache(self) -> None:
        """One token of a fixed prompt: the server's prefix cache is then the same for every side."""
        body = request_body(CACHE_RESET[0]["content"], 1, self.model)
        body.update(stream=False)
        body.pop("stream_options")
        self.http.post(f"{self.server.url}/completions", json=body).raise_for_status()

    def usage(self, message: str) -> tuple[str, int]:
        """The answer and its exact completion tokens, from an unstreamed call (the server streams no usage)."""
        body = request_body(message, self.max_tokens, self.model)
        body.update(stream=False)
        body.pop("stream_options")
        reply = self.http.post(f"{self.server.url}/completions", json=body).json()
        return reply["choices"][0]["text"].strip(), reply["usage"]["completion_tokens"]

    def stream(self, run: Run, message: str) -> Run:
        body = request_body(message, self.max_tokens, self.model)
        text, chunks, finish = "", 0, None
        run.started = now()
        with self.http.stream("POST", f"{self.server.url}/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                choice = (json.loads(data).get("choices") or [{}])[0]
                piece = choice.get("text")
                if piece:
                    chunks += 1
                    text += piece
                    if text.strip():  # the first visible text, as our backend (which skips leading blanks) shows it
                        stamp = now()
                        run.first_text = run.first_text or stamp
                        run.last_text = stamp
                finish = choice.get("finish_reason") or finish
        run.ended = now()
        run.text, run.finish = text.strip(), finish or ""
        run.extra["chunks"] = chunks
        return run

    def close(self) -> None:
        self.http.close()


def measure_remote(options: Options) -> dict:
    from gemma_chat.accounts import auth
    from gemma_chat.store.db import close_database
    from gemma_chat.inference.engine import Engine
    from gemma_chat.ops.startup import open_data_dir

    from .__main__ import default_model

    model = default_model().resolve()
    options.say(f"  starting llama_cpp.server ({model.name}, {SERVER_THREADS} thread, core {SERVER_CORE})…")
    server = Server(model, options.work_dir / "remote-server.log")
    if SERVER_CORE is not None:
        os.sched_setaffinity(0, set(_CORES) - {SERVER_CORE})  # the client side (threads made from now on too)
    try:
        server_up_s = server.wait_until_up()
        tier = TierSettings(
            name="mini", display_name="bench remote", model_file="", price=1, backend="openai", base_url=server.url,
            api="completions", max_tokens=options.max_tokens, n_ctx=N_CTX, temperature=0.0, timeout_s=120.0,
        )
        settings = bench_settings(options.work_dir / "remote-data", {"mini": tier}, starting_balance=1_000_000)
        open_data_dir(settings)
        user = auth.register_user(settings, "bench", "bench-password")
        engine = Engine.load(settings, log=lambda line: None)
        direct = DirectSide(server, options.max_tokens)
        try:
            if not engine.is_available("mini"):
                raise RuntimeError(f"the remote tier is not available: {engine.tiers()[0].reason}")

            def reset_then(side):
                def run_side(run: Run, message: str) -> Run:
                    direct.reset_cache()
                    return side(run, message)
                return run_side

            def ours(run: Run, message: str) -> Run:
                engine_run(engine, "mini", run, message)
                run.extra["counted_tokens"], run.completion_tokens = run.completion_tokens, None
                return run

            def turn(run: Run, message: str) -> Run:
                turn_run(settings, engine, user.id, "mini", run, message)
                run.extra["counted_tokens"], run.completion_tokens = run.completion_tokens, None
                return run

            exact = {index: direct.usage(prompt) for index, prompt in enumerate(prompt_set(options))}
            runs = interleave(options, {
                "a_direct": reset_then(direct.stream),
                "b_engine": reset_then(ours),
                "c_turn": reset_then(turn),
            })
        finally:
            direct.close()
            engine.close()
            close_database()
    finally:
        server.stop()
        if SERVER_CORE is not None:
            os.sched_setaffinity(0, set(_CORES))

    for r in runs["a_direct"]:
        r.completion_tokens = exact[r.prompt][1]
    reference = {(r.round, r.prompt): r for r in runs["a_direct"]}
    labels = {
        "a_direct": "(a) the server called directly: httpx streams POST /v1/completions",
        "b_engine": "(b) our remote tier: Engine.generate, backend = openai",
        "c_turn": "(c) full chat turn on the remote tier: run_turn",
    }
    summaries = {name: summarize(side_runs, reference, labels[name]) for name, side_runs in runs.items()}
    for name in summaries:
        with_ratios(summaries[name], summaries["a_direct"])
    counted = [(r.extra["counted_tokens"], exact[r.prompt][1]) for name in ("b_engine", "c_turn") for r in runs[name]]
    return {
        "model": str(model),
        "server": {"threads": SERVER_THREADS, "core": SERVER_CORE, "n_ctx": N_CTX, "interrupt_requests": False, "extra_buffers": False,
                   "ready_s": round(server_up_s, 2)},
        "max_tokens": options.max_tokens,
        "rounds": options.rounds,
        "prompts": prompt_set(options),
        "completion_tokens_per_prompt": {index: tokens for index, (_, tokens) in exact.items()},
        "unstreamed_text_matches": all(r.text == exact[r.prompt][0] for r in runs["a_direct"]),
        # llama_cpp.server streams no usage: our backend counts a token per chunk; the server's count is exact.
        "counted_tokens_match_usage": sum(1 for c, e in counted if c == e) / len(counted) if counted else None,
        "sides": summaries,
        "runs": {
            name: [
                {"prompt": r.prompt, "round": r.round, "ttft_ms": ms(r.ttft), "window_ms": ms(r.window),
                 "total_ms": ms(r.ended - r.started), "finish": r.finish, **r.extra}
                for r in side_runs
            ]
            for name, side_runs in runs.items()
        },
    }
