"""Every test gets a fresh data dir in tmp_path with its own SQLite file.

A test module marked `both_engines` runs each test that uses the database twice: on that SQLite
file and on a fresh database of a real PostgreSQL server (tests/postgres.py).
"""

from __future__ import annotations

import atexit
import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from gemma_chat.backends.cpu_features import simulating_amx_crash
from gemma_chat.config import CACHE_DIR_ENV, environment_without_settings, load_settings
from gemma_chat.store import db, session_queries

ROOT = Path(__file__).resolve().parent.parent

# The suite is one machine: the extra-buffer probe's answer is learnt once per run, in a cache of the
# run's own (inherited by every app and worker it starts), never in the developer's real one.
_MACHINE_CACHE = tempfile.mkdtemp(prefix="gemma-chat-test-cache-")
os.environ[CACHE_DIR_ENV] = _MACHINE_CACHE
atexit.register(shutil.rmtree, _MACHINE_CACHE, ignore_errors=True)

pytest_plugins = [
    "tests.model_fixtures",  # bundled_gguf, templated_gguf: real model files, built once
    "tests.browser_fixtures",  # browser, page: one Chromium for every browser test
    "tests.postgres",  # postgres_server, postgres_url: a real PostgreSQL 15, a fresh database per test
]

# bcrypt at cost 12 takes ~0.25 s a hash; tests that are not about the cost use the minimum.
FAST_BCRYPT = 4


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds (CI still runs it)")
    config.addinivalue_line("markers", "browser: drives a real Chromium through Playwright")
    config.addinivalue_line("markers", "both_engines: runs on SQLite and on PostgreSQL")
    config.addinivalue_line("markers", "worker: starts a real model worker; .ci/run also runs it on the simulated AMX CPU")


# Whole-app tests (e2e/, reliability/) and the session engine start workers too.
WORKER_DIRECTORIES = {"e2e", "reliability"}
WORKER_FIXTURES = {"demo_engine"}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.parent.name in WORKER_DIRECTORIES or WORKER_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.worker)


def fuzz_examples(count: int) -> int:
    """Hypothesis examples for a fuzz test that runs with a real worker: all of them in make test; a tenth
    on the simulated AMX CPU, where what differs is how the worker started, not the inputs."""
    return max(count // 10, 25) if simulating_amx_crash() else count


# On the simulated AMX CPU (make test-other-cpu) the CPU is the subject, not the database: a test that
# runs on both engines runs once there, on SQLite (make test has already run it on PostgreSQL).
DB_ENGINES = ["sqlite"] if simulating_amx_crash() else ["sqlite", "postgresql"]


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("both_engines") and "db_engine" in metafunc.fixturenames:
        metafunc.parametrize("db_engine", DB_ENGINES, indirect=True)


@pytest.fixture
def db_engine(request) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def database_url(db_engine, request) -> str:
    """Empty for SQLite (the file in the data dir), a fresh PostgreSQL database's URL otherwise."""
    return request.getfixturevalue("postgres_url") if db_engine == "postgresql" else ""


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def settings(data_dir: Path, database_url: str):
    return load_settings(data_dir=data_dir, env={}, bcrypt_rounds=FAST_BCRYPT, database_url=database_url)


@pytest.fixture
def database(settings):
    """The shared Peewee database opened on this test's file, closed after."""
    from gemma_chat.ops.startup import open_data_dir

    open_data_dir(settings)
    yield db.database
    db.close_database()


def run_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for a subprocess of main.py: this test's data dir, fast bcrypt."""
    env = environment_without_settings()
    env.update(
        {
            "GEMMA_CHAT_DATA_DIR": str(data_dir),
            "GEMMA_CHAT_BCRYPT_ROUNDS": str(FAST_BCRYPT),
            "GEMMA_CHAT_MODELS_DIR": str(MODEL_CACHE),
            # One slot per tier, as in demo_settings: a second answer on a tier waits.
            "GEMMA_CHAT_MINI_PARALLEL": "1",
            "GEMMA_CHAT_PRO_PARALLEL": "1",
        },
        **extra,
    )
    return env


# --- the real bundled model ----------------------------------------------------------------

# Assembled once per machine (~250 MB) and shared by every test that runs the model.
MODEL_CACHE = Path(os.environ.get("GEMMA_CHAT_TEST_MODELS", Path.home() / ".cache" / "gemma-chat-test" / "models"))


def demo_settings(data_dir: Path, **overrides):
    """Settings whose tiers are both served by the bundled 270M, small enough to be quick.

    One slot per tier, so a second request on a tier waits (the tests of queueing, Stop and crashes
    rely on it); tests/test_batching*.py ask for more slots."""
    import dataclasses

    settings = load_settings(data_dir=data_dir, env={}, bcrypt_rounds=FAST_BCRYPT, models_dir=MODEL_CACHE, **overrides)
    tiers = {
        name: dataclasses.replace(tier, n_ctx=1024, max_tokens=24, parallel=1, n_gpu_layers=0)
        for name, tier in settings.tiers.items()
    }
    return dataclasses.replace(settings, tiers=tiers)


@pytest.fixture(scope="session")
def demo_engine(tmp_path_factory):
    """One resident Engine for the session: mini and pro both the bundled 270M."""
    from gemma_chat.inference.engine import Engine

    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    engine = Engine.load(demo_settings(tmp_path_factory.mktemp("engine-data")), log=lambda line: None)
    yield engine
    engine.close()


@pytest.fixture
def chat_settings(data_dir: Path, database):
    """This test's data dir with the demo model settings, database open."""
    return demo_settings(data_dir)


# --- a browser's session, for calling the UI's callbacks in-process ---------------------------


def live_sessions(user_id: int, settings) -> int:
    """How many of the user's sessions are live now (signed in and not idle past the limit)."""
    now = db.utcnow()
    return session_queries.count_live_sessions(user_id, now, now - dt.timedelta(seconds=settings.session_idle_s))


def browser_request(token: str | None = None, *, accept_language: str | None = None, query: str = ""):
    """A gr.Request as Gradio builds it for an event from a browser holding this session cookie
    (and sending this Accept-Language: a browser set to Russian sends "ru-RU,ru;q=0.9"; `query`:
    the page's URL parameters, "chat=12")."""
    import gradio as gr
    from starlette.requests import Request

    headers = [(b"cookie", f"gemma_session={token}".encode())] if token else []
    if accept_language is not None:
        headers.append((b"accept-language", accept_language.encode()))
    scope = {
        "type": "http", "method": "POST", "path": "/gradio_api/queue/join", "headers": headers, "query_string": query.encode(),
    }
    request = gr.Request(request=Request(scope))
    request.token = token
    return request


def signed_in_request(
    settings, username: str, password: str = "long enough pw", *, register: bool = True, accept_language: str | None = None
):
    """Register (or log in) through the same functions as the /auth routes; the browser's request after."""
    from gemma_chat.accounts import auth
    from gemma_chat.web.app import login_with_session, register_with_session

    if register:
        token = register_with_session(settings, username, password)
    else:
        token = login_with_session(settings, username, password, auth.LOCAL_CLIENT)
    request = browser_request(token, accept_language=accept_language)
    request.user_id = auth.find_user(username).id
    return request


def shown_after(updates) -> dict:
    """What the page shows after a streamed event: its updates (outputs by name) merged in order."""
    shown: dict = {}
    for update in updates:
        shown.update(update)
    return shown


def users_table_rows(table_html: str) -> list[dict]:
    """The Admin tab's Users table as the page shows it (admin/users.py renders it as HTML): for each
    row its cells' text, its account id, and the actions its menu offers with their labels."""
    from html.parser import HTMLParser

    rows: list[dict] = []

    class Reader(HTMLParser):
        cell: list[str] | None = None
        button: str | None = None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "tr" and "data-state" in attrs:
                rows.append({"cells": [], "menu": {}, "id": None})
            elif rows and tag == "td" and "data-label" in attrs:
                self.cell = []
            elif rows and tag == "button" and "data-action" in attrs:
                rows[-1]["id"] = int(attrs["data-id"])
                self.button = attrs["data-action"]
                rows[-1]["menu"][self.button] = ""

        def handle_endtag(self, tag):
            if tag == "td" and self.cell is not None:
                rows[-1]["cells"].append("".join(self.cell))
                self.cell = None
            elif tag == "button":
                self.button = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)
            elif self.button is not None:
                rows[-1]["menu"][self.button] += data

    Reader(convert_charrefs=True).feed(table_html)
    return rows


def run_processes_together(count: int, target, args_for) -> list:
    """Start `count` spawned processes of `target(barrier, queue, *args_for(n))`, which wait at the
    barrier so their work overlaps, and return what each put on the queue."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(count), context.Queue()
    workers = [context.Process(target=target, args=(barrier, queue, *args_for(n))) for n in range(count)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    return results


def run_in_own_loop(coroutine):
    """asyncio.run in a thread of its own: the session's Playwright browser keeps an event loop
    running in pytest's thread once a browser test has run, and asyncio.run refuses to nest."""
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
