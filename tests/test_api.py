"""/v1, the OpenAI-compatible API: the official `openai` package against the real app in a subprocess,
plus the router in-process (a scripted engine) for what needs exact timing or thousands of bodies.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from conftest import MODEL_CACHE, fuzz_examples, run_in_own_loop
from e2e.conftest import RunningApp
from gemma_chat.accounts import auth, keys
from gemma_chat.billing import ledger
from gemma_chat.store import db
from gemma_chat.inference.engine import GenerationResult, Sampling, TierStatus
from gemma_chat.ops.verify import verify_database
from gemma_chat.web.api import create_api_router, fold_messages, safe_length
from reliability.conftest import FAULTS_HOOK, query, verify

pytestmark = pytest.mark.worker  # starts real model workers: .ci/run runs it on the simulated AMX CPU too

openai = pytest.importorskip("openai")


# --- in-process: the router with a scripted engine -------------------------------------------------


class ScriptedEngine:
    """Answers "Hello there, friend." in five pieces, one model token each (a request's max_tokens
    ends it early with "length", as the worker does); `delay_s` before the first one (stop ends it)."""

    PIECES = ["Hello", " there", ",", " friend", "."]

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s

    def tiers(self):
        return [
            TierStatus("mini", "Scripted", 1, True, "", False, 24, 1024),
            TierStatus("pro", "Scripted Pro", 3, True, "", False, 24, 1024),
        ]

    def generate(self, tier, messages, *, stop=None, sampling=None):
        text = ""
        if stop is not None and stop.wait(self.delay_s):
            yield GenerationResult("", 3, 0, "stopped", None, 1, "Scripted")
            return
        limit = sampling.max_tokens if sampling is not None and sampling.max_tokens else len(self.PIECES)
        for count, piece in enumerate(self.PIECES, 1):
            if stop is not None and stop.is_set():
                yield GenerationResult(text, 3, len(text.split()), "stopped", 1, 1, "Scripted")
                return
            text += piece
            yield piece
            if count == limit < len(self.PIECES):
                yield GenerationResult(text, 3, count, "length", 1, 2, "Scripted")
                return
        yield GenerationResult(text, 3, 5, "stop", 1, 2, "Scripted")


@pytest.fixture
def api_user(settings, database):
    alice = auth.register_user(settings, "alice", "long enough pw")
    _, key = keys.create_key(alice.id, "tests")
    return alice, key


def router_app(settings, engine) -> FastAPI:
    app = FastAPI()
    app.include_router(create_api_router(settings, engine))
    return app



def test_a_tail_that_may_begin_a_stop_sequence_waits():
    assert safe_length("Hello wor", ["world"]) == len("Hello ")
    assert safe_length("Hello", ["world"]) == 5


def test_completion_usage_stop_and_max_tokens_in_process(settings, api_user):
    alice, key = api_user
    client = TestClient(router_app(settings, ScriptedEngine()))
    auth_header = {"Authorization": f"Bearer {key}"}
    plain = client.post("/v1/chat/completions", headers=auth_header,
                        json={"model": "mini", "messages": [{"role": "user", "content": "hi"}]})
    assert plain.status_code == 200
    assert plain.json()["choices"][0]["message"]["content"] == "Hello there, friend."
    assert plain.json()["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    assert plain.headers["X-Credits-Remaining"] == "9"
    stopped = client.post("/v1/chat/completions", headers=auth_header,
                          json={"model": "mini", "stop": ", f", "messages": [{"role": "user", "content": "hi"}]})
    assert stopped.json()["choices"][0] == {
        "index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop", "logprobs": None,
    }
    short = client.post("/v1/chat/completions", headers=auth_header,
                        json={"model": "mini", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
    assert short.json()["choices"][0]["message"]["content"] == "Hello there"
    assert short.json()["choices"][0]["finish_reason"] == "length"
    assert ledger.get_balance(alice.id).balance == 7 and verify_database(settings) == []
    from gemma_chat.chats.history import list_history
    from gemma_chat.ops.reports import Reports

    assert {row.source for row in list_history(alice.id).rows} == {"api"}
    assert Reports().full()["requests_by_source"] == [{"source": "api", "model": "Scripted", "requests": 3, "credits": 3}]


class RecordingEngine(ScriptedEngine):
    """The scripted answer, remembering the sampling each request asked for."""

    def __init__(self):
        super().__init__()
        self.asked: list[Sampling | None] = []

    def generate(self, tier, messages, *, stop=None, sampling=None):
        self.asked.append(sampling)
        return super().generate(tier, messages, stop=stop, sampling=sampling)


def test_temperature_and_top_p_reach_the_engine_and_bad_values_are_refused(settings, api_user):
    alice, key = api_user
    engine = RecordingEngine()
    client = TestClient(router_app(settings, engine))
    auth_header = {"Authorization": f"Bearer {key}"}
    hi = [{"role": "user", "content": "hi"}]
    for body in ({"temperature": 0, "top_p": 0.25}, {"temperature": 1.5}, {}):
        assert client.post("/v1/chat/completions", headers=auth_header, json={"model": "mini", "messages": hi, **body}).status_code == 200
    # Unset fields stay None: the tier's own settings apply, as in the chat window.
    assert engine.asked == [Sampling(temperature=0.0, top_p=0.25), Sampling(temperature=1.5), Sampling()]
    for name, value in [("temperature", 2.5), ("temperature", -0.1), ("temperature", "hot"), ("temperature", True),
                        ("top_p", 1.01), ("top_p", -1), ("top_p", [0.5])]:
        refused = client.post("/v1/chat/completions", headers=auth_header, json={"model": "mini", "messages": hi, name: value})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == name, (name, value)
    assert len(engine.asked) == 3 and ledger.get_balance(alice.id).balance == 7  # refusals never reach the model


def test_other_paths_under_v1_get_an_openai_shaped_404(settings, api_user):
    client = TestClient(router_app(settings, ScriptedEngine()))
    for method, path in [("GET", "/v1/embeddings"), ("GET", "/v1/chat/completions"), ("DELETE", "/v1/models")]:
        answer = client.request(method, path)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "unknown_url"


def test_the_per_user_rate_limit_answers_429_with_retry_after(settings, api_user):
    import dataclasses

    _, key = api_user
    client = TestClient(router_app(dataclasses.replace(settings, api_rate_per_minute=3), ScriptedEngine()))
    answers = [client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert answers[-1].json()["error"]["type"] == "rate_limit_exceeded"


def test_a_client_gone_before_any_text_is_not_charged(settings, api_user):
    """The raw ASGI exchange: the body, then the client leaves while the model has not answered yet."""
    alice, key = api_user
    app = router_app(settings, ScriptedEngine(delay_s=30))
    body = json.dumps({"model": "mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
        "root_path": "", "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }
    sent = []

    async def exchange():
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        gone_at = time.monotonic() + 0.3

        async def receive():  # as a server's: blocks while the client is there, then says it left
            if messages:
                return messages.pop(0)
            if time.monotonic() < gone_at:
                await asyncio.sleep(gone_at - time.monotonic())
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        await asyncio.wait_for(app(scope, receive, send), 10)

    started = time.monotonic()
    run_in_own_loop(exchange())
    assert time.monotonic() - started < 5  # the turn stopped; it did not wait out the 30 s
    deadline = time.monotonic() + 5
    while ledger.get_balance(alice.id).held and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ledger.get_balance(alice.id) == ledger.Balance(balance=10, held=0)
    assert db.database.execute_sql("SELECT status, credits_charged, source FROM interactions").fetchall() == [
        ("stopped", 0, "api")
    ]
    assert verify_database(settings) == []


MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "developer", "tool", "", None, 3])},
    optional={"content": st.one_of(st.text(max_size=30), st.none(), st.integers(),
                                   st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]),
                                                                   "text": st.text(max_size=10)}), max_size=2))},
)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
BODY = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "model": st.one_of(st.sampled_from(["mini", "pro", "nope", ""]), JSON_VALUE),
            "messages": st.one_of(st.lists(MESSAGE, max_size=4), JSON_VALUE),
            "max_tokens": st.one_of(st.integers(-5, 10**20), JSON_VALUE),
            "max_completion_tokens": st.one_of(st.integers(-5, 50), JSON_VALUE),
            "temperature": st.one_of(st.floats(allow_nan=True), JSON_VALUE),
            "top_p": st.one_of(st.floats(allow_nan=True), JSON_VALUE),
            "stop": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=6), JSON_VALUE),
            "stream": st.one_of(st.booleans(), JSON_VALUE),
            "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": JSON_VALUE}), JSON_VALUE),
            "n": JSON_VALUE,
        },
    ),
    JSON_VALUE,
)


@hypothesis_settings(max_examples=fuzz_examples(600), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODY, raw=st.booleans(), junk=st.binary(max_size=40))
def test_no_request_body_gets_a_500(settings, api_user, body, raw, junk):
    import dataclasses

    alice, key = api_user
    if id(settings) not in _CLIENTS:
        unlimited = dataclasses.replace(settings, api_rate_per_minute=10**9)
        _CLIENTS[id(settings)] = TestClient(router_app(unlimited, ScriptedEngine()))
    client = _CLIENTS[id(settings)]
    content = junk if raw else json.dumps(body).encode()
    answer = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, content=content)
    assert answer.status_code in (200, 400, 402, 404, 413, 429), answer.text
    if answer.status_code != 200:
        assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
    if answer.headers.get("content-type", "").startswith("text/event-stream"):
        assert answer.text.rstrip().endswith("data: [DONE]")
    assert ledger.get_balance(alice.id).held == 0


_CLIENTS: dict = {}


@pytest.fixture(autouse=True)
def _fresh_clients():
    _CLIENTS.clear()
    yield
    _CLIENTS.clear()


# --- the real app, the official client ---------------------------------------------------------------


class AppDatabase:
    """The running app's SQLite file, opened from the test for set-up and checks (WAL allows it)."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir

    def __enter__(self):
        db.open_database(self.data_dir / "gemma_chat.db")
        return self

    def __exit__(self, *exc):
        db.close_database()


def user_with_key(app: RunningApp, username: str, credits: int | None = None) -> str:
    from gemma_chat.config import load_settings

    with AppDatabase(app.data_dir):
        user = auth.register_user(load_settings(data_dir=app.data_dir, env={}, bcrypt_rounds=4), username, "long enough pw")
        if credits is not None and credits != user.balance:
            ledger.grant_credits(user.id, credits - user.balance, actor_id=None, note="test set-up")
        return keys.create_key(user.id, "tests")[1]


def client_for(app: RunningApp, key: str, **kwargs):
    return openai.OpenAI(base_url=app.url + "v1", api_key=key, max_retries=0, timeout=60, **kwargs)


def balance_of(app: RunningApp, username: str) -> tuple[int, int]:
    return query(app.data_dir, "SELECT balance, held FROM users WHERE username = ?", (username,))[0]


def settled(app: RunningApp, username: str, timeout: float = 20) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        balance, held = balance_of(app, username)
        if held == 0 or time.monotonic() > deadline:
            return balance, held
        time.sleep(0.1)


@pytest.fixture(scope="module")
def api_app(tmp_path_factory):
    """One app for the module: the real engine behind the fault hook ([fault:slow]); no waiting line."""
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    directory = tmp_path_factory.mktemp("api-app")
    running = RunningApp(directory / "data", directory / "app.log", GEMMA_CHAT_QUEUE_SIZE="0", **FAULTS_HOOK)
    yield running
    running.stop()


USER_SAYS = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a colour."}]


@pytest.mark.slow
def test_models_and_a_completion_through_the_openai_client(api_app):
    key = user_with_key(api_app, "sdkuser")
    client = client_for(api_app, key)
    models = client.models.list()
    assert {m.id for m in models.data} == {"mini", "pro"}
    raw = client.chat.completions.with_raw_response.create(model="mini", messages=USER_SAYS, temperature=0.2, top_p=0.9)
    completion = raw.parse()
    answer = completion.choices[0].message.content
    assert answer and completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert raw.headers["X-Credits-Remaining"] == "9" and balance_of(api_app, "sdkuser") == (9, 0)
    assert raw.headers["X-Frame-Options"] == "SAMEORIGIN"  # the edge's headers on /v1 too
    row = query(api_app.data_dir, "SELECT status, credits_charged, source, answer, prompt_tokens, completion_tokens "
                                  "FROM interactions WHERE request_id = ?", (completion.id.removeprefix("chatcmpl-"),))
    assert row == [("ok", 1, "api", answer, completion.usage.prompt_tokens, completion.usage.completion_tokens)]
    assert verify(api_app.data_dir) == []


@pytest.mark.slow
def test_temperature_0_repeats_itself_and_temperature_2_does_not(api_app):
    """The 270M's own sampling (temperature 0.3) is neither: so the answers show the request's values were used."""
    client = client_for(api_app, user_with_key(api_app, "sampler", credits=20))
    story = [{"role": "user", "content": "Tell me a story about a dragon who lives by the sea."}]

    def answers(count: int, **sampling) -> set[str]:
        return {client.chat.completions.create(model="mini", messages=story, max_tokens=16, **sampling).choices[0].message.content
                for _ in range(count)}

    greedy = answers(3, temperature=0)
    assert len(greedy) == 1 and next(iter(greedy))
    assert answers(3, temperature=0.7, top_p=0) == greedy  # top_p 0 keeps only the likeliest token: greedy too
    assert len(answers(4, temperature=2, top_p=1)) > 1
    assert balance_of(api_app, "sampler") == (10, 0) and verify(api_app.data_dir) == []


@pytest.mark.slow
def test_a_stream_with_usage_in_its_last_chunk(api_app):
    key = user_with_key(api_app, "streamer")
    client = client_for(api_app, key)
    chunks = list(client.chat.completions.create(
        model="pro", messages=USER_SAYS, stream=True, stream_options={"include_usage": True}, max_tokens=1000,
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert all(c.usage is None for c in chunks[:-1])
    assert balance_of(api_app, "streamer") == (7, 0)  # pro costs 3
    assert query(api_app.data_dir, "SELECT answer, source FROM interactions WHERE request_id = ?",
                 (chunks[0].id.removeprefix("chatcmpl-"),)) == [(text, "api")]


@pytest.mark.slow
@pytest.mark.parametrize(("limit", "tokens"), [(5, 5), (20, 20), (80, 24)])  # 24: the tier's own max_tokens here
def test_max_tokens_counts_model_tokens_and_usage_is_the_same_streamed_or_not(api_app, limit, tokens):
    """Issue 21, item 7: max_tokens 5 gave 9 completion tokens and 80 gave 111 (it counted text
    pieces), and the streamed and plain usage of one request differed. [fault:endless] makes the
    real model ignore its stop strings, so the limit is what ends these answers."""
    client = client_for(api_app, user_with_key(api_app, f"limits{limit}", credits=2))
    counting = [{"role": "user", "content": "[fault:endless] Count from one to two hundred in words, separated by commas"}]
    plain = client.chat.completions.create(model="mini", messages=counting, max_tokens=limit, temperature=0)
    chunks = list(client.chat.completions.create(
        model="mini", messages=counting, max_tokens=limit, temperature=0, stream=True, stream_options={"include_usage": True},
    ))
    streamed_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    streamed_finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert plain.usage.completion_tokens == tokens and plain.choices[0].finish_reason == "length"
    assert chunks[-1].usage == plain.usage and streamed_finish == "length" and streamed_text
    # Not the same text: the second request reuses the first's cached prompt, and a cached prefix's
    # logits differ from a fresh prefill's within llama.cpp's kernel tolerance (tests/test_batching.py),
    # which can flip a greedy near-tie of the 270M.


@pytest.mark.slow
def test_errors_are_shaped_like_openai_s(api_app):
    key = user_with_key(api_app, "erring", credits=2)
    client = client_for(api_app, key)
    with pytest.raises(openai.AuthenticationError):
        client_for(api_app, "gck_not-a-key-at-all-000000000000").chat.completions.create(model="mini", messages=USER_SAYS)
    cookie_only = httpx.post(api_app.url + "v1/chat/completions", cookies={"gemma_session": "x" * 43}, json={})
    assert cookie_only.status_code == 401  # a session cookie is no API key
    foreign = httpx.post(api_app.url + "v1/chat/completions", headers={"Authorization": f"Bearer {key}",
                         "Origin": "https://evil.example"}, json={"model": "mini", "messages": USER_SAYS})
    assert foreign.status_code == 403 and foreign.headers["X-Content-Type-Options"] == "nosniff"
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="ultra", messages=USER_SAYS)
    assert unknown.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as malformed:
        client.chat.completions.create(model="mini", messages=[{"role": "wizard", "content": "hi"}])
    assert malformed.value.body["param"] == "messages[0].role"
    with pytest.raises(openai.BadRequestError) as malformed:
        client.chat.completions.create(model="mini", messages=USER_SAYS, temperature=7)
    assert malformed.value.body["param"] == "temperature"
    with pytest.raises(openai.APIStatusError) as poor:
        client.chat.completions.create(model="pro", messages=USER_SAYS)
    assert poor.value.status_code == 402
    assert "costs 3 credits" in poor.value.message and "you have 2" in poor.value.message
    assert poor.value.response.headers["X-Credits-Remaining"] == "2"
    assert balance_of(api_app, "erring") == (2, 0) and verify(api_app.data_dir) == []


@pytest.mark.slow
def test_a_busy_tier_answers_429_with_retry_after(api_app):
    key = user_with_key(api_app, "queuer")
    client = client_for(api_app, key)
    slow = client.chat.completions.create(
        model="mini", messages=[{"role": "user", "content": "[fault:slow] Count to ten."}], stream=True
    )
    first = next(iter(slow))  # the tier is busy now, for at least 4 s
    with pytest.raises(openai.RateLimitError) as busy:
        client.chat.completions.create(model="mini", messages=USER_SAYS)
    assert int(busy.value.response.headers["Retry-After"]) >= 1
    assert first.choices[0].delta.role == "assistant"
    list(slow)
    assert settled(api_app, "queuer") == (9, 0) and verify(api_app.data_dir) == []


@pytest.mark.slow
def test_closing_the_stream_mid_answer_is_a_charged_stop(api_app):
    key = user_with_key(api_app, "leaver")
    client = client_for(api_app, key)
    stream = client.chat.completions.create(
        model="mini", messages=[{"role": "user", "content": "[fault:slow] Tell me a story."}], stream=True
    )
    request_id = None
    for item in stream:
        request_id = item.id.removeprefix("chatcmpl-")
        if item.choices and item.choices[0].delta.content:
            break  # text arrived: leave now
    stream.close()
    assert settled(api_app, "leaver") == (9, 0)  # charged, as the UI's Stop is
    deadline = time.monotonic() + 10
    while query(api_app.data_dir, "SELECT status FROM interactions WHERE request_id = ?", (request_id,)) == [("pending",)]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    status, charged, answer = query(
        api_app.data_dir, "SELECT status, credits_charged, answer FROM interactions WHERE request_id = ?", (request_id,)
    )[0]
    assert (status, charged) == ("stopped", 1) and answer
    assert verify(api_app.data_dir) == []


@pytest.mark.slow
def test_an_idempotency_key_replays_the_first_answer_and_charges_once(api_app):
    key = user_with_key(api_app, "retrier")
    client = client_for(api_app, key)
    headers = {"Idempotency-Key": "order-42"}
    first = client.chat.completions.create(model="mini", messages=USER_SAYS, extra_headers=headers)
    again = client.chat.completions.with_raw_response.create(model="mini", messages=USER_SAYS, extra_headers=headers)
    assert again.parse().model_dump() == first.model_dump()
    assert again.headers["Idempotent-Replayed"] == "true"
    # A duplicate sent while the first still runs waits for it, then gets the same answer.
    slow = [{"role": "user", "content": "[fault:slow] Say hi."}]
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(
            lambda _: client.chat.completions.create(model="mini", messages=slow, extra_headers={"Idempotency-Key": "k2"}),
            range(2),
        ))
    assert both[0].model_dump() == both[1].model_dump()
    with pytest.raises(openai.BadRequestError):  # the same key with another body
        client.chat.completions.create(model="pro", messages=USER_SAYS, extra_headers=headers)
    assert settled(api_app, "retrier") == (8, 0)
    assert query(api_app.data_dir, "SELECT COUNT(*) FROM interactions i JOIN users u ON u.id = i.user_id "
                                   "WHERE u.username = 'retrier'") == [(2,)]
    assert verify(api_app.data_dir) == []


@pytest.mark.slow
def test_ten_parallel_requests_with_credits_for_one_charge_exactly_one(api_app):
    key = user_with_key(api_app, "parallel", credits=1)
    client = client_for(api_app, key)

    def ask(_):
        try:
            return client.chat.completions.create(model="mini", messages=USER_SAYS).choices[0].message.content
        except openai.APIStatusError as exc:
            return exc.status_code

    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(ask, range(10)))
    assert sum(isinstance(o, str) for o in outcomes) == 1
    assert sorted(o for o in outcomes if not isinstance(o, str)) == [402] * 9
    assert settled(api_app, "parallel") == (0, 0)
    assert query(api_app.data_dir, "SELECT status, COUNT(*), SUM(credits_charged) FROM interactions i JOIN users u "
                                   "ON u.id = i.user_id WHERE u.username = 'parallel' GROUP BY status ORDER BY status") == [
        ("ok", 1, 1), ("refused", 9, 0)
    ]
    assert verify(api_app.data_dir) == []


@pytest.mark.slow
def test_keys_survive_a_restart_and_a_revoked_key_fails_at_once(tmp_path):
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    app = RunningApp(tmp_path / "data", tmp_path / "app.log")
    try:
        key = user_with_key(app, "keeper")
        assert client_for(app, key).models.list().data
    finally:
        app.stop()
    app = RunningApp(tmp_path / "data", tmp_path / "app2.log")
    try:
        client = client_for(app, key)
        assert client.chat.completions.create(model="mini", messages=USER_SAYS).choices[0].message.content
        with AppDatabase(app.data_dir):
            (row,) = keys.list_keys(auth.find_user("keeper").id)
            keys.revoke_key(row.id)
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    finally:
        app.stop()
