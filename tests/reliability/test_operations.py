"""What an operator sees of the running app: /metrics, /healthz and /readyz, from outside.

/metrics must count exactly what users did (the app process counts; the workers are other
processes), and never be served to the public. /readyz must follow the database: 503 while
PostgreSQL is down, 200 once it is back, with no restart of the app.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, run_env
from tests.postgres import PostgresServer, postgres_available

from .conftest import start_app
from .gradio_http import GradioSession

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def scrape(url: str, **headers: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one /metrics answer."""
    response = httpx.get(url + "metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text) for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_until_ready(url: str, timeout: float = 180) -> httpx.Response:
    """/readyz until 200: the page answers before the models have loaded."""
    deadline = time.monotonic() + timeout
    while (ready := httpx.get(url + "readyz", timeout=30)).status_code != 200:
        assert time.monotonic() < deadline, ready.text
        time.sleep(0.5)
    return ready


def create_key(data_dir: Path, username: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "keys", "create", username],
                            env=run_env(data_dir), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[-1]


def test_metrics_count_exactly_what_a_scripted_session_did(tmp_path):
    app = start_app(tmp_path, GEMMA_CHAT_METRICS="1", GEMMA_CHAT_STARTING_BALANCE="2")
    try:
        wait_until_ready(app.url)
        with GradioSession(app.url) as browser:
            assert browser.register("metered") == ""
            key = create_key(app.data_dir, "metered")
            before = scrape(app.url)
            auth = {"Authorization": f"Bearer {key}"}
            answers = [httpx.post(app.url + "v1/chat/completions", headers=auth, timeout=120,
                                  json={"model": "mini", "messages": QUESTION}) for _ in range(2)]
            assert [a.status_code for a in answers] == [200, 200]
            refused = httpx.post(app.url + "v1/chat/completions", headers=auth, timeout=120,
                                 json={"model": "mini", "messages": QUESTION})
            assert refused.status_code == 402  # 2 credits, 2 answers: the third is refused before generating
            browser.top_up(5)
            assert browser.post_form("login", "metered", "a wrong password").status_code == 400
        after = scrape(app.url)
    finally:
        app.stop()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    answered = [a.json() for a in answers]
    assert moved("gemma_chat_requests_total", tier="mini", outcome="ok") == 2
    assert moved("gemma_chat_requests_total", tier="mini", outcome="refused") == 1
    assert moved("gemma_chat_credits_charged_total") == sum(a["credits_charged"] for a in answered) == 2
    assert moved("gemma_chat_tokens_generated_total", tier="mini") == sum(a["usage"]["completion_tokens"] for a in answered)
    assert moved("gemma_chat_time_to_first_token_seconds_count", tier="mini") == 2
    assert moved("gemma_chat_credits_topped_up_total") == 5
    assert moved("gemma_chat_signin_refusals_total", reason="refused") == 1
    assert moved("gemma_chat_v1_requests_total", status="200") == 2
    assert moved("gemma_chat_v1_requests_total", status="402") == 1
    assert value(after, "gemma_chat_holds_open") == 0 and value(after, "gemma_chat_queue_length", tier="mini") == 0
    assert value(after, "gemma_chat_tier_ready", tier="mini") == 1 and value(after, "gemma_chat_slots", tier="mini") >= 1


def test_metrics_are_off_by_default_and_never_served_to_the_public(tmp_path):
    off = start_app(tmp_path / "off")
    try:
        assert httpx.get(off.url + "metrics", timeout=30).status_code == 404
        assert httpx.get(off.url + "healthz", timeout=30).json() == {"status": "ok"}
    finally:
        off.stop()
    # Behind a proxy (trusted), a client from elsewhere is what the proxy forwards: not this machine.
    on = start_app(tmp_path / "on", GEMMA_CHAT_METRICS="1", GEMMA_CHAT_TRUST_PROXY_HEADERS="1")
    try:
        wait_until_ready(on.url)
        with GradioSession(on.url) as first:
            assert first.register("operator") == ""  # the first account: an administrator
        with GradioSession(on.url) as second:
            assert second.register("someone") == ""
        admin_key, user_key = create_key(on.data_dir, "operator"), create_key(on.data_dir, "someone")
        remote = {"X-Forwarded-For": "203.0.113.7"}
        assert httpx.get(on.url + "metrics", headers=remote, timeout=30).status_code == 404
        as_user = {**remote, "Authorization": f"Bearer {user_key}"}
        assert httpx.get(on.url + "metrics", headers=as_user, timeout=30).status_code == 404
        as_admin = {**remote, "Authorization": f"Bearer {admin_key}"}
        assert value(scrape(on.url, **as_admin), "gemma_chat_tier_ready", tier="mini") == 1
        assert value(scrape(on.url), "gemma_chat_tier_ready", tier="mini") == 1  # this machine: no key needed
    finally:
        on.stop()


@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL 15 is not installed")
def test_readyz_follows_the_database_down_and_back_without_a_restart(tmp_path):
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="gemma-pg-ready-")))
    server.start()
    try:
        app = start_app(tmp_path, GEMMA_CHAT_DATABASE_URL=server.fresh_database())
        try:
            ready = wait_until_ready(app.url)
            assert ready.json()["database"] == "ok"
            assert ready.json()["tiers"] == {"mini": "ready", "pro": "ready"}

            server.stop()
            down = httpx.get(app.url + "readyz", timeout=30)
            assert down.status_code == 503 and down.json()["database"] == "not answering"
            assert httpx.get(app.url + "healthz", timeout=30).status_code == 200  # alive, just not ready

            server.resume()
            assert wait_until_ready(app.url, timeout=30).json()["database"] == "ok"
        finally:
            app.stop()
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def test_json_logs_are_one_object_per_line_with_the_turn_s_context(tmp_path):
    app = start_app(tmp_path, GEMMA_CHAT_LOG_FORMAT="json")
    try:
        wait_until_ready(app.url)
        with GradioSession(app.url) as browser:
            assert browser.register("logged") == ""
        key = create_key(app.data_dir, "logged")
        answer = httpx.post(app.url + "v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=120,
                            json={"model": "mini", "messages": QUESTION})
        assert answer.status_code == 200
    finally:
        app.stop()
    lines = [line for line in app.log_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line: one JSON object, nothing else
    assert all({"time", "level", "event", "message"} <= set(entry) for entry in entries)
    events = [entry["event"] for entry in entries]
    assert "listening" in events and "models" in events and events[-1] == "stopping"
    (turn,) = [entry for entry in entries if entry["event"] == "turn"]
    assert turn["tier"] == "mini" and turn["outcome"] == "ok" and turn["credits"] == 1
    assert turn["request_id"] and isinstance(turn["user_id"], int)
    file_log = [json.loads(line) for line in (app.data_dir / "gemma_chat.log").read_text().splitlines()]
    assert any(entry["event"] == "turn" and entry["request_id"] == turn["request_id"] for entry in file_log)
