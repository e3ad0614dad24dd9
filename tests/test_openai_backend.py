"""backends/openai.py against real servers: llama_cpp.server with the bundled 270M in a subprocess,
and, for faults a real server will not produce on demand, a tiny stdlib HTTP server in this process.
"""

from __future__ import annotations

import dataclasses
import http.server
import os
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from gemma_chat.accounts import auth
from gemma_chat.billing import ledger
from gemma_chat.chats import turn
from gemma_chat.backends.base import GenerationResult, Sampling, Waiting
from gemma_chat.backends.openai import OpenAIBackend, check_server, trim_history
from gemma_chat.backends.prompts import TRANSCRIPT_PREAMBLE, transcript_prompt
from gemma_chat.config import TierSettings, load_settings
from gemma_chat.store.db import Interaction
from gemma_chat.errors import ContextTooLongError, GenerationError, ModelUnavailableError, QueueFullError
from gemma_chat.inference.model_files import describe_models, format_models_table, statuses_as_json
from gemma_chat.ops.verify import verify_database
from tests.conftest import ROOT

pytestmark = pytest.mark.worker  # starts real model workers: .ci/run runs it on the simulated AMX CPU too

API_KEY = "sk-test-270m-not-a-secret"
KEY_ENV = "GEMMA_CHAT_TEST_REMOTE_KEY"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
LONG_QUESTION = [{"role": "user", "content": "Describe the history of Rome in detail, century by century."}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def remote_tier(base_url: str, **overrides) -> TierSettings:
    values = dict(
        name="pro", display_name="Remote 270M", model_file="", price=3, backend="openai", base_url=base_url,
        api="completions", api_key_env=KEY_ENV, max_tokens=48, n_ctx=1024, temperature=0.0, timeout_s=10.0,
    )
    return TierSettings(**{**values, **overrides})


@pytest.fixture(autouse=True)
def api_key_env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, API_KEY)


@pytest.fixture
def backends(tmp_path):
    """make(url, **tier_overrides) -> a started OpenAIBackend; every one is closed after the test."""
    made = []
    settings = load_settings(data_dir=tmp_path / "data", env={})

    def make(base_url: str, *, queue_size: int = 8, **overrides) -> OpenAIBackend:
        tier = remote_tier(base_url, **overrides)
        backend = OpenAIBackend(dataclasses.replace(settings, queue_size=queue_size), tier, log=lambda line: None)
        made.append(backend)
        backend.wait_until_loaded(5)
        return backend

    yield make
    for backend in made:
        backend.close()


def collect(stream) -> tuple[list[str], GenerationResult]:
    items = list(stream)
    deltas = [item for item in items if isinstance(item, str)]
    assert isinstance(items[-1], GenerationResult) and sum(isinstance(i, GenerationResult) for i in items) == 1
    return deltas, items[-1]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- a real llama_cpp.server -------------------------------------------------------------------


# `python -m llama_cpp.server` with llama.cpp's extra CPU buffer types off: on an AMX Xeon they crash
# on the first token (FIELD_NOTES), and this server is a test peer whose speed does not matter.
SERVER_WITHOUT_EXTRA_BUFFERS = """
import runpy, sys
from gemma_chat.backends.llama_runner import set_extra_buffers
set_extra_buffers(False)
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


class ModelServer:
    """`python -m llama_cpp.server` with the bundled 270M, as FIELD_NOTES says to run it for many users."""

    def __init__(self, model: Path, log_path: Path, port: int | None = None):
        self.model, self.log_path, self.port = model, log_path, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen | None = None

    def start(self) -> ModelServer:
        command = [
            sys.executable, "-c", SERVER_WITHOUT_EXTRA_BUFFERS, "--model", str(self.model), "--host", "127.0.0.1",
            "--port", str(self.port), "--api_key", API_KEY, "--interrupt_requests", "False", "--n_ctx", "1024",
            # One thread: two spinning OpenMP threads per server slow everything down on a shared 2-core runner.
            "--n_threads", "1", "--n_threads_batch", "1",
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {self.process.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/models", headers=AUTH, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "llama_cpp.server did not start within 60 s"
            time.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="module")
def model_server(bundled_gguf, tmp_path_factory):
    server = ModelServer(bundled_gguf, tmp_path_factory.mktemp("llama-server") / "server.log").start()
    yield server
    server.kill()


@pytest.fixture
def own_server(bundled_gguf, tmp_path):
    """A server of this test's own, to kill or to start late; killed after the test."""
    servers = []

    def make(port: int | None = None) -> ModelServer:
        servers.append(ModelServer(bundled_gguf, tmp_path / f"server-{len(servers)}.log", port))
        return servers[-1]

    yield make
    for server in servers:
        server.kill()


@pytest.mark.slow
def test_a_real_server_streams_a_sensible_answer_with_tokens_counted(backends, model_server):
    backend = backends(model_server.url)
    status = backend.status()
    assert (status.available, status.state, status.backend, status.label) == (True, "ready", "openai", "Remote 270M")
    assert (status.price, status.n_ctx, status.max_tokens, status.is_demo) == (3, 1024, 48, False)

    deltas, result = collect(backend.generate(QUESTION))
    assert "Paris" in result.text and result.text == "".join(deltas) and len(deltas) > 1
    assert result.finish_reason in ("stop", "length") and result.model_label == "Remote 270M"
    # llama_cpp.server sends no usage when streaming: one chunk a token, the prompt estimated.
    assert result.completion_tokens >= len(deltas) and result.prompt_tokens == len(transcript_prompt(QUESTION)) // 4
    assert 0 < result.ttft_ms <= result.duration_ms and result.queued_ms >= 0


@pytest.mark.slow
def test_stop_mid_answer_ends_at_once_and_the_server_answers_the_next(backends, model_server):
    backend = backends(model_server.url, max_tokens=400)
    stop = threading.Event()
    items, stopped_at = [], None
    for item in backend.generate(LONG_QUESTION, stop=stop):
        items.append(item)
        if isinstance(item, str) and stopped_at is None:
            stop.set()
            stopped_at = time.monotonic()
    assert time.monotonic() - stopped_at < 1.0  # one token at most, on a busy machine
    result = items[-1]
    assert isinstance(result, GenerationResult) and result.finish_reason == "stopped"
    assert result.text == "".join(i for i in items if isinstance(i, str)) and result.text

    _, again = collect(backend.generate(QUESTION))  # the server let go of the stopped one
    assert again.finish_reason in ("stop", "length") and again.text


@pytest.mark.slow
def test_a_refused_key_makes_the_tier_unavailable_and_names_the_env_var(backends, model_server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    backend = backends(model_server.url)
    status = backend.status()
    assert not status.available and status.state == "unreachable"
    assert f"refused the API key in {KEY_ENV} (HTTP 401)" in status.reason
    with pytest.raises(ModelUnavailableError, match=f"refused the API key in {KEY_ENV}") as raised:
        list(backend.generate(QUESTION))
    assert "sk-wrong" not in raised.value.message + raised.value.detail + status.reason
    assert check_server(remote_tier(model_server.url)) == (False, status.reason)

    monkeypatch.delenv(KEY_ENV)
    assert f"{KEY_ENV} is not set in the environment" in check_server(remote_tier(model_server.url))[1]


@pytest.mark.slow
def test_a_message_beyond_the_context_is_an_error_that_suggests_a_new_chat(backends, model_server):
    """llama_cpp.server answers a streamed prompt beyond its context with an empty stream, not a 400
    (servers that send the 400 get ContextTooLongError: see the HTTP errors test)."""
    backend = backends(model_server.url)
    with pytest.raises(GenerationError, match="before it began; if this chat is long, start a new one") as raised:
        list(backend.generate([{"role": "user", "content": "word " * 1500}]))
    assert "after 0 chunks" in raised.value.detail
    assert collect(backend.generate(QUESTION))[1].text  # the server is fine


@pytest.mark.slow
def test_a_server_down_at_start_becomes_available_when_it_answers(backends, own_server, monkeypatch):
    monkeypatch.setattr(OpenAIBackend, "RECHECK_S", 0.3)
    server = own_server()
    backend = backends(server.url)
    status = backend.status()
    assert not status.available and status.state == "unreachable"
    assert status.reason == f"not reachable at {server.url}: connection refused"
    with pytest.raises(ModelUnavailableError, match="not reachable at http://127.0.0.1:.*: connection refused"):
        list(backend.generate(QUESTION))

    server.start()
    wait_for(lambda: backend.status().available, 5, "the tier to come back")  # without a restart of anything
    assert backend.status().reason == f"served by {server.url}"
    assert collect(backend.generate(QUESTION))[1].text


class RecordingEngine:
    """The real Engine, keeping every item its generate() yields."""

    def __init__(self, engine):
        self.engine, self.items = engine, []

    def tiers(self):
        return self.engine.tiers()

    def generate(self, tier, messages, *, stop=None, sampling=None):
        for item in self.engine.generate(tier, messages, stop=stop, sampling=sampling):
            self.items.append(item)
            yield item


@pytest.mark.slow
def test_a_server_killed_mid_answer_charges_nothing_and_the_tier_goes_unavailable(own_server, chat_settings, monkeypatch):
    from gemma_chat.inference.engine import Engine

    monkeypatch.setattr(OpenAIBackend, "RECHECK_S", 0.3)
    server = own_server().start()
    settings = dataclasses.replace(chat_settings, tiers={"pro": remote_tier(server.url, max_tokens=400)})
    alice = auth.register_user(settings, "alice", "long enough pw")
    engine = RecordingEngine(Engine.load(settings, log=lambda line: None))
    try:
        assert [(t.tier, t.available, t.backend) for t in engine.tiers()] == [("pro", True, "openai")]
        updates = []
        for update in turn.run_turn(settings, engine, alice.id, "pro", LONG_QUESTION[0]["content"]):
            updates.append(update)
            if update.status == "streaming" and server.process.poll() is None:
                server.kill()
        final = updates[-1]
        assert any(u.status == "streaming" for u in updates[:-1])
        assert final.status == "error" and final.credits_charged == 0
        assert "ended the answer early" in final.message and "Nothing was charged" in final.message
        assert not any(isinstance(item, GenerationResult) for item in engine.items)
        assert ledger.get_balance(alice.id).balance == 10 and ledger.get_balance(alice.id).held == 0
        assert Interaction.get().status == "error"
        assert verify_database(settings) == []

        wait_for(lambda: not engine.tiers()[0].available, 5, "the tier to be marked unavailable")
        assert "connection refused" in engine.tiers()[0].reason
    finally:
        engine.engine.close()


# --- faults from a stdlib server ---------------------------------------------------------------


class FaultServer:
    """A stdlib HTTP server that answers GET /v1/models and whatever `respond(handler)` does to a POST."""

    def __init__(self, respond):
        self.released = threading.Event()  # ends a handler that keeps its answer waiting
        self.requests: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                send_json(self, 200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

            def do_POST(self):
                outer.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                respond(self, outer)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def send_json(handler, status: int, payload) -> None:
    body = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def send_events(handler, *payloads) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()
    for payload in payloads:
        handler.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        handler.wfile.flush()


def completion_chunk(text: str, finish_reason=None) -> dict:
    return {"object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": finish_reason}]}


@pytest.fixture
def fault_server():
    servers = []

    def make(respond) -> FaultServer:
        servers.append(FaultServer(respond))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_a_stream_that_ends_without_a_finish_reason_is_an_error_not_a_result(backends, fault_server):
    def two_chunks_then_close(handler, server):  # what llama_cpp.server's interrupt_requests does
        send_events(handler, completion_chunk(" Paris"), completion_chunk(" is"))

    backend = backends(fault_server(two_chunks_then_close).url)
    items = []
    with pytest.raises(GenerationError, match="ended the answer early") as raised:
        for item in backend.generate(QUESTION):
            items.append(item)
    assert items == ["Paris", " is"]
    assert "without a finish_reason after 2 chunks" in raised.value.detail


def test_usage_from_the_server_is_used_and_chat_messages_are_sent_as_they_are(backends, fault_server):
    def answer(handler, server):
        chunk = {"choices": [{"index": 0, "delta": {"content": "Paris."}, "finish_reason": "stop"}]}
        send_events(handler, chunk, {"choices": [], "usage": {"prompt_tokens": 17, "completion_tokens": 2}})
        handler.wfile.write(b"data: [DONE]\n\n")

    server = fault_server(answer)
    backend = backends(server.url, api="chat", temperature=None, model="")
    deltas, result = collect(backend.generate([*QUESTION, {"role": "assistant", "content": "Paris."}, *QUESTION]))
    assert (deltas, result.text, result.prompt_tokens, result.completion_tokens, result.finish_reason) == (
        ["Paris."], "Paris.", 17, 2, "stop"
    )
    sent = server.requests[0]
    assert sent["messages"][0] == QUESTION[0] and len(sent["messages"]) == 3
    assert sent["model"] == "fake-model"  # the server's only model, as /models named it
    assert sent["stream_options"] == {"include_usage": True} and sent["max_tokens"] == 48
    assert "temperature" not in sent  # unset: the server's own defaults for its model


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_a_request_s_temperature_and_top_p_are_sent_instead_of_the_tier_s(backends, fault_server, api):
    def answer(handler, server):
        piece = {"delta": {"content": "Paris."}} if api == "chat" else {"text": " Paris."}
        send_events(handler, {"choices": [{"index": 0, **piece, "finish_reason": "stop"}]})
        handler.wfile.write(b"data: [DONE]\n\n")

    server = fault_server(answer)
    backend = backends(server.url, api=api, temperature=0.3)
    for sampling in (Sampling(temperature=1.7, top_p=0.2), Sampling(top_p=0.6), None):
        assert collect(backend.generate(QUESTION, sampling=sampling))[1].text == "Paris."
    sent = [(body["temperature"], body.get("top_p")) for body in server.requests]
    tier_top_p = 0.95 if api == "completions" else None  # the transcript's own sampling, or the server's default
    assert sent == [(1.7, 0.2), (0.3, 0.6), (0.3, tier_top_p)]


def test_stop_is_noticed_while_the_server_is_silent(backends, fault_server):
    def silent(handler, server):  # headers, then nothing: a long prefill
        send_events(handler)
        server.released.wait(10)

    backend = backends(fault_server(silent).url)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    _, result = collect(backend.generate(QUESTION, stop=stop))
    assert result.finish_reason == "stopped" and result.text == "" and result.ttft_ms is None
    assert time.monotonic() - started < 0.3 + 0.4  # STOP_POLL_S is 0.05; the rest is a busy machine's slack


def test_a_second_generation_waits_its_turn_and_a_full_queue_is_busy(backends, fault_server):
    def silent(handler, server):
        send_events(handler)
        server.released.wait(10)

    backend = backends(fault_server(silent).url, max_concurrent=1, queue_size=1)
    stop = threading.Event()
    first = backend.generate(QUESTION, stop=stop)
    threading.Thread(target=list, args=(first,), daemon=True).start()
    wait_for(lambda: backend.status().available and backend._queue.running == 1, 2, "the first generation to run")
    second = backend.generate(QUESTION, stop=stop)
    assert next(second) == Waiting(1)
    with pytest.raises(QueueFullError, match="Remote 270M model is busy"):
        next(backend.generate(QUESTION))
    stop.set()  # ends the first; the second then gets its turn, already stopped
    _, result = collect(second)
    assert result.finish_reason == "stopped" and result.queued_ms > 0


@pytest.mark.parametrize(
    "status, body, error, message",
    [
        (401, {"error": "unauthorized"}, ModelUnavailableError, f"refused the API key in {KEY_ENV}"),
        (400, {"error": {"message": "Requested tokens (2000) exceed context window of 1024"}}, ContextTooLongError, "too long"),
        (429, {"error": "rate limited"}, QueueFullError, "server is busy"),
        (503, {"error": "Loading model"}, QueueFullError, "server is busy"),
        (500, {"error": "out of memory"}, GenerationError, r"refused the request \(HTTP 500\)"),
    ],
)
def test_http_errors_become_typed_errors_with_the_details(backends, fault_server, status, body, error, message):
    backend = backends(fault_server(lambda handler, server: send_json(handler, status, body)).url)
    with pytest.raises(error, match=message) as raised:
        list(backend.generate(QUESTION))
    if status == 500:
        assert raised.value.detail.startswith("HTTP 500 from http://127.0.0.1:") and "out of memory" in raised.value.detail
    if status == 401:
        assert not backend.status().available and KEY_ENV in backend.status().reason
        assert API_KEY not in raised.value.message + raised.value.detail


def test_a_server_that_is_not_running_is_unavailable_with_the_reason(backends):
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = backends(url)
    assert backend.status().reason == f"not reachable at {url}: connection refused"
    with pytest.raises(ModelUnavailableError, match=f"not reachable at {url}: connection refused"):
        list(backend.generate(QUESTION))
    assert check_server(remote_tier(url)) == (False, f"not reachable at {url}: connection refused")
    assert check_server(remote_tier("http://no-such-host.invalid/v1"))[1].endswith(": unknown host")


def test_close_refuses_new_work(backends, fault_server):
    backend = backends(fault_server(lambda handler, server: None).url)
    backend.close()
    assert not backend.status().available
    with pytest.raises(ModelUnavailableError):
        list(backend.generate(QUESTION))


# --- prompts, trimming, the model list ---------------------------------------------------------


def test_the_transcript_prompt_is_the_local_format():
    turns = [
        {"role": "user", "content": " Hi "},
        {"role": "assistant", "content": "Hello.\n"},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert transcript_prompt(turns) == TRANSCRIPT_PREAMBLE + "Q: Hi\nA: Hello.\n\nQ: Capital of France?\nA:"


def test_history_is_trimmed_oldest_pair_first_to_fit_the_context_roughly():
    tier = remote_tier("http://x/v1", n_ctx=200, max_tokens=100)  # room for about 300 characters
    turns = [
        {"role": "user", "content": "a" * 100},
        {"role": "assistant", "content": "b" * 100},
        {"role": "user", "content": "c" * 100},
        {"role": "assistant", "content": "d" * 50},
        {"role": "user", "content": "e" * 100},
    ]
    assert trim_history(turns, tier) == turns[2:]
    assert trim_history(turns, tier, fixed_chars=100) == turns[4:]
    assert trim_history([{"role": "user", "content": "z" * 5000}], tier)[0]["content"] == "z" * 5000  # the server decides


def test_describe_models_lists_a_remote_tier_without_planning_memory(tmp_path, bundled_gguf):
    settings = load_settings(data_dir=tmp_path / "data", env={}, models_dir=bundled_gguf.parent)
    tiers = {"mini": settings.tiers["mini"], "pro": remote_tier("http://gpu-box:8080/v1/")}
    settings = dataclasses.replace(settings, tiers=tiers)
    mini, pro = describe_models(settings, available_bytes=1)  # 1 byte free: only the local tier could care
    assert mini.status == "does not fit"
    assert (pro.status, pro.loadable, pro.base_url, pro.bytes_needed) == ("remote", False, "http://gpu-box:8080/v1", None)
    assert pro.reason == "served by http://gpu-box:8080/v1"
    row = statuses_as_json([pro])[0]
    assert (row["status"], row["base_url"], row["file"]) == ("remote", "http://gpu-box:8080/v1", "")
    table = format_models_table([mini, pro])
    assert "pro: http://gpu-box:8080/v1\n" in table and table.splitlines()[2].endswith("remote")
