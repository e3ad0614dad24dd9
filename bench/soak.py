"""Soak: eight users on the real app for N minutes, with Stops, disconnects and a worker SIGKILL a minute.

`python main.py --no-browser` runs as a subprocess with the bundled model on both tiers. Each user
has a browser session (Gradio's queue protocol, tests/reliability/gradio_http.py) and an API key,
and loops until the time is up over a mix of what people do: chats in the page (some stopped with
the Stop event, some abandoned by closing the event stream), /v1 chat completions (streamed,
not streamed, abandoned mid-stream), top-ups when the balance runs low, and History. Once a minute
a model worker is SIGKILLed; the app fails the answers it had in flight and restarts it (the crash
limit is raised so that the tier is never taken out of service: the soak wants the restarts).

Measured: the RSS of the app and of its workers every few seconds, the second half's mean against
the first's after a warm-up (flat within 10 %); and the books at the end, with the app still
running: active holds (must reach 0), top-ups acknowledged against top-ups in the ledger, credits
/v1 reported against the ledger's charge for the same request, the ledger's charges against the
turns' logged charges, and `verify`. The suite runs the same scenario for two minutes
(tests/reliability/test_soak.py).
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import signal
import sqlite3
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .app import AppProcess, app_environment
from .common import Options

USERS = 8
KILL_EVERY_S = 60
SAMPLE_EVERY_S = 2
RELOAD_S = 15  # after a kill: the worker restarts and maps its model in again
FLAT_WITHIN = 0.10
MAX_TOKENS = 24
LOW_BALANCE = 15
TOP_UP = 100
PROMPTS = (
    "What is the capital of France?", "Name three colours.", "Why is the sky blue?", "Tell me about the sea.",
    "What is two plus two?", "Write one sentence about cats.", "What is a prime number?", "Name a large river.",
)
# What each user does, in turn: chats in the page and through /v1, interrupted or not, and History;
# top-ups happen on their own when the balance runs low. User i starts at place i, so that the
# first round of eight users already does every kind.
ACTIONS = ("ui_chat", "v1_chat", "ui_stop", "v1_stream", "ui_disconnect", "v1_disconnect", "ui_chat", "history",
           "v1_chat", "v1_stream")
UNEXPECTED = re.compile(r"Something went wrong|Traceback|Internal Server Error")
# A client's patience for one request. /v1 sends nothing while a request waits in the model's queue
# (the page gets Gradio's queue messages), so on a loaded machine a shorter read timeout measures the
# queue, not the app: at 180 s and 1.5 of the 2 cores taken by other work, 14 of 40 /v1 calls timed
# out. Beyond this, a request counts as hung.
CLIENT_TIMEOUT_S = 600


def measure_soak(options: Options) -> dict:
    """The bench section: `python -m bench --only soak --minutes 30`."""
    return run_soak(options.model, options.work_dir / "soak", minutes=options.soak_minutes, log=options.say)


@dataclass
class Tally:
    """One user's view of what happened, merged over users at the end."""

    requests: dict = field(default_factory=dict)  # action -> count
    outcomes: dict = field(default_factory=dict)  # "action: outcome" -> count
    unexpected: list = field(default_factory=list)  # what no user should ever see (500s, tracebacks)
    topped_up: int = 0  # credits the app acknowledged adding
    v1_charged: dict = field(default_factory=dict)  # request_id -> credits /v1 reported charging
    slowest_s: float = 0.0  # the longest a request took to end (the queue included)

    def count(self, action: str, outcome: str) -> None:
        self.requests[action] = self.requests.get(action, 0) + 1
        key = f"{action}: {outcome}"
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


def run_soak(model: Path, work_dir: Path, *, minutes: float, users: int = USERS, kill_every_s: float = KILL_EVERY_S,
             seed: int = 21, log=print) -> dict:
    from tests.reliability.gradio_http import GradioSession

    work_dir.mkdir(parents=True, exist_ok=True)
    data_dir = work_dir / "data"
    tier = {"model_file": model, "max_tokens": MAX_TOKENS, "n_ctx": 1024}
    env = app_environment(
        data_dir, {"mini": tier, "pro": {**tier, "required_quantization": ""}},
        GEMMA_CHAT_WORKER_CRASH_LIMIT="100000",  # a kill a minute must not take a tier out of service
        GEMMA_CHAT_SIGNIN_ATTEMPTS_PER_MINUTE="100000", GEMMA_CHAT_REGISTRATIONS_PER_HOUR="100000",
        GEMMA_CHAT_API_RATE_PER_MINUTE="100000", GEMMA_CHAT_STRICT_MODELS="1",
    )
    app = AppProcess(data_dir, env, work_dir / "app.log")
    duration_s = minutes * 60
    try:
        app.wait_until_up()
        log(f"  app up; {users} users for {minutes:g} min, a worker SIGKILL every {kill_every_s:g} s")
        people = [Person(app, f"soak{i}", GradioSession, random.Random(seed + i), first_action=i) for i in range(users)]
        for person, key in zip(people, make_api_keys(data_dir, [p.username for p in people]).values()):
            person.api.headers["Authorization"] = f"Bearer {key}"
        stop_at = time.monotonic() + duration_s
        sampler = Sampler(app)
        killer = Killer(app, kill_every_s, stop_at)
        threads = [threading.Thread(target=person.run, args=(stop_at,), name=person.username) for person in people]
        started = time.monotonic()
        sampler.start()
        killer.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ran_s = time.monotonic() - started
        killer.stop()
        sampler.stop()
        holds_left = wait_for_no_holds(data_dir)
        books = read_books(data_dir, people)
        app_alive = app.process.poll() is None
    finally:
        app.stop()
    output = app.log()
    from gemma_chat.config import load_settings
    from gemma_chat.store import db
    from gemma_chat.ops.verify import verify_database

    db.open_database(data_dir / "gemma_chat.db")
    try:
        problems = verify_database(load_settings(data_dir=data_dir, env={}))
    finally:
        db.close_database()
    tally = Tally()
    for person in people:
        for action, n in person.tally.requests.items():
            tally.requests[action] = tally.requests.get(action, 0) + n
        for key, n in person.tally.outcomes.items():
            tally.outcomes[key] = tally.outcomes.get(key, 0) + n
        tally.unexpected += person.tally.unexpected
    warm_up_s = min(180.0, max(30.0, duration_s / 10))
    return {
        "minutes_planned": minutes,
        "duration_s": round(ran_s, 1),
        "users": users,
        "requests": sum(tally.requests.values()),
        "requests_by_action": dict(sorted(tally.requests.items())),
        "outcomes": dict(sorted(tally.outcomes.items())),
        "unexpected": tally.unexpected[:20],
        "unexpected_count": len(tally.unexpected),
        "slowest_request_s": round(max(p.tally.slowest_s for p in people), 1),
        "worker_kills": killer.kills,
        "rss": sampler.summary(warm_up_s, killer.killed_at),
        "holds_left": holds_left,
        **books,
        "verify_problems": problems,
        "verify_ok": not problems,
        "app_alive_at_end": app_alive,
        "tracebacks_in_app_output": output.count("Traceback"),
    }


class Person:
    """One user: a browser session and an API key, doing one thing after another until the time is up."""

    def __init__(self, app: AppProcess, username: str, session_class, rng: random.Random, *, first_action: int = 0):
        self.app = app
        self.username = username
        self.rng = rng
        self.next_action = first_action
        self.tally = Tally()
        self.page = session_class(app.url, timeout=CLIENT_TIMEOUT_S)
        message = self.page.register(username, "soak password")
        if message:
            raise RuntimeError(f"could not register {username}: {message}")
        self.session_class = session_class
        self.api = httpx.Client(timeout=CLIENT_TIMEOUT_S)  # its key comes once every user is registered (make_api_keys)
        self.balance = 10
        self.turns_in_chat = 0

    def run(self, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            if self.balance < LOW_BALANCE:
                try:
                    self.top_up()
                except Exception as exc:  # noqa: BLE001
                    self.tally.count("top_up", f"client error ({type(exc).__name__})")
                    self.tally.unexpected.append(f"top_up: {exc!r}")
                continue
            action = ACTIONS[self.next_action % len(ACTIONS)]
            self.next_action += 1
            tier = "pro" if self.rng.random() < 0.3 else "mini"
            prompt = self.rng.choice(PROMPTS)
            began = time.monotonic()
            try:
                outcome = getattr(self, action)(tier, prompt)
                self.tally.slowest_s = max(self.tally.slowest_s, time.monotonic() - began)
            except Exception as exc:  # noqa: BLE001 — a reset connection, an answer of the wrong shape: the app's fault, counted
                outcome = f"client error ({type(exc).__name__})"
                self.tally.unexpected.append(f"{action}: {exc!r}")
            self.tally.count(action, outcome)
        self.page.close()
        self.api.close()

    # --- the page ---

    def _fresh_chat(self) -> None:
        self.turns_in_chat += 1
        if self.turns_in_chat >= 4:  # a chat's context stays short: the soak is about time, not context
            self.page.call("new_chat", "")  # the sidebar's search box, as the page sends it
            self.turns_in_chat = 0

    def _page_outcome(self, reply) -> str:
        if reply.balance is not None:
            self.balance = reply.balance
        if UNEXPECTED.search(reply.text):
            self.tally.unexpected.append(reply.text[-300:])
        if not reply.outcome.ok:
            return "refused by the page"
        if "Stopped." in reply.text:
            return "stopped"
        if "Nothing was charged" in reply.text:
            return "failed, nothing charged"
        return "answered" if reply.charged else "no charge"

    def ui_chat(self, tier: str, prompt: str) -> str:
        self._fresh_chat()
        return self._page_outcome(self.page.chat(tier, prompt))

    def ui_stop(self, tier: str, prompt: str) -> str:
        """Stop from the same browser (its cookie) after the first streamed update, as the button does."""
        self._fresh_chat()
        stopper = self.session_class(self.app.url, self.page.config)
        stopper.http.cookies = self.page.http.cookies
        stopped = threading.Event()

        def stop(updates: int) -> None:
            if updates >= 2 and not stopped.is_set():
                stopped.set()
                threading.Thread(target=self._send_stop, args=(stopper,), daemon=True).start()

        try:
            return self._page_outcome(self.page.chat(tier, prompt, on_update=stop))
        finally:
            stopper.close()

    @staticmethod
    def _send_stop(stopper) -> None:
        """Stop, as the button sends it; the answer may end first and its session close under it."""
        with contextlib.suppress(httpx.HTTPError):
            stopper.call("stop")

    def ui_disconnect(self, tier: str, prompt: str) -> str:
        """Join the chat event, read its first update, then close the stream: a tab closed mid-answer."""
        self._fresh_chat()
        page = self.page
        index = next(i for i, d in enumerate(page.config["dependencies"]) if d.get("api_name") == "chat")
        body = {"data": [tier, prompt, [], None, ""], "fn_index": index, "session_hash": page.session_hash,
                "event_data": None, "trigger_id": page.config["dependencies"][index]["targets"][0][0]}
        joined = page.http.post(page.url + "gradio_api/queue/join", json=body)
        if joined.status_code != 200:
            return f"join refused {joined.status_code}"
        with page.http.stream("GET", page.url + "gradio_api/queue/data", params={"session_hash": page.session_hash}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:") and json.loads(line[5:]).get("msg") in ("process_generating", "process_completed"):
                    break
        page.session_hash = uuid.uuid4().hex  # the tab is gone; the user opens the page again
        page.restore()
        return "disconnected"

    def history(self, tier: str, prompt: str) -> str:
        outcome = self.page.call("history", 1)
        if not outcome.ok:
            self.tally.unexpected.append(f"history: {outcome.error}")
        return "read" if outcome.ok else "failed"

    def top_up(self) -> None:
        message = self.page.top_up(TOP_UP)
        if f"Added {TOP_UP} credits" in message:
            self.tally.topped_up += TOP_UP
            self.balance += TOP_UP
            self.tally.count("top_up", "added")
        else:
            self.tally.count("top_up", "refused")
            self.tally.unexpected.append(f"top_up: {message}")
            time.sleep(1)

    # --- /v1 ---

    def _body(self, tier: str, prompt: str, stream: bool) -> dict:
        return {"model": tier, "stream": stream, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": prompt}]}

    def _v1_status(self, response: httpx.Response) -> str:
        remaining = response.headers.get("X-Credits-Remaining")
        if remaining is not None:
            self.balance = int(remaining)
        if response.status_code >= 500 and response.status_code != 503:
            self.tally.unexpected.append(f"/v1 {response.status_code}: {response.text[:200]}")
        return f"HTTP {response.status_code}"

    def v1_chat(self, tier: str, prompt: str) -> str:
        response = self.api.post(self.app.url + "v1/chat/completions", json=self._body(tier, prompt, False))
        if response.status_code != 200:
            return self._v1_status(response)
        self._v1_status(response)
        result = response.json()
        self.tally.v1_charged[result["id"].removeprefix("chatcmpl-")] = result["credits_charged"]
        return "answered"

    def v1_stream(self, tier: str, prompt: str, *, disconnect: bool = False) -> str:
        with self.api.stream("POST", self.app.url + "v1/chat/completions", json=self._body(tier, prompt, True)) as response:
            if response.status_code != 200:
                response.read()
                return self._v1_status(response)
            self._v1_status(response)
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        return "failed in the stream"
                    if disconnect and any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                        return "disconnected"
            return "answered"

    def v1_disconnect(self, tier: str, prompt: str) -> str:
        return self.v1_stream(tier, prompt, disconnect=True)


def make_api_keys(data_dir: Path, usernames: list[str]) -> dict[str, str]:
    """An API key for each user, made on the app's database as `python main.py keys create` does
    (in this process: eight CLI start-ups cost a minute on a busy machine)."""
    from gemma_chat.accounts import auth, keys
    from gemma_chat.store import db

    db.open_database(data_dir / "gemma_chat.db")
    try:
        return {name: keys.create_key(auth.require_user(name).id, "soak")[1] for name in usernames}
    finally:
        db.close_database()


def worker_processes(app: AppProcess) -> list:
    import psutil

    workers = []
    for child in psutil.Process(app.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "gemma_chat.backends.worker" in " ".join(child.cmdline()):
                workers.append(child)
    return workers


class Killer:
    """A model worker SIGKILLed every `every_s` seconds from half that on, the tiers in turn, until
    `stop_at`: one kill per minute of soak, never on its last second."""

    def __init__(self, app: AppProcess, every_s: float, stop_at: float):
        self.app, self.every_s, self.stop_at = app, every_s, stop_at
        self.kills = 0
        self.killed_at: list[float] = []  # time.monotonic() of each kill
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="killer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        tiers = ["mini", "pro"]
        next_at = time.monotonic() + self.every_s / 2
        while not self._stopping.wait(max(0.0, next_at - time.monotonic())) and next_at < self.stop_at:
            next_at += self.every_s
            tier = tiers[self.kills % 2]
            workers = sorted(worker_processes(self.app), key=lambda worker: tier not in _cmdline(worker))
            for worker in workers:  # this tier's worker, or the other's while this one is still restarting
                with contextlib.suppress(Exception):
                    worker.send_signal(signal.SIGKILL)
                    self.killed_at.append(time.monotonic())
                    self.kills += 1
                    break


def _cmdline(process) -> list[str]:
    with contextlib.suppress(Exception):
        return process.cmdline()
    return []


class Sampler:
    """RSS of the app process and the sum over its workers, every SAMPLE_EVERY_S seconds."""

    def __init__(self, app: AppProcess):
        self.app = app
        self.samples: list[tuple[float, int, int, int]] = []  # (seconds, app rss, workers rss, workers)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self._began = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        app = psutil.Process(self.app.process.pid)
        while not self._stopping.wait(SAMPLE_EVERY_S):
            with contextlib.suppress(psutil.Error):
                workers = worker_processes(self.app)
                rss = 0
                for worker in workers:
                    with contextlib.suppress(psutil.Error):
                        rss += worker.memory_info().rss
                self.samples.append((time.monotonic() - self._began, app.memory_info().rss, rss, len(workers)))

    def summary(self, warm_up_s: float, killed_at: list[float]) -> dict:
        """First and second half of the samples after the warm-up: means and their ratio, per side.

        The workers' figure leaves out the RELOAD_S after each kill: the new worker's RSS grows as it
        maps the model in, and that dip is the kill's, not a leak's.
        """
        kills = [t - self._began for t in killed_at]
        after = [s for s in self.samples if s[0] >= warm_up_s]
        result = {"warm_up_s": warm_up_s, "samples": len(after), "every_s": SAMPLE_EVERY_S}
        for name, column in (("app", 1), ("workers", 2)):
            rows = [s for s in after if name == "app" or (s[3] == 2 and not any(0 <= s[0] - k < RELOAD_S for k in kills))]
            half = len(rows) // 2
            if half < 2:
                result[name] = {"samples": len(rows)}
                continue
            first = statistics.fmean(s[column] for s in rows[:half])
            second = statistics.fmean(s[column] for s in rows[half:])
            result[name] = {
                "samples": len(rows),
                "first_half_mean_mb": round(first / 1e6, 1),
                "second_half_mean_mb": round(second / 1e6, 1),
                "ratio": round(second / first, 3),
                "max_mb": round(max(s[column] for s in rows) / 1e6, 1),
                "flat": abs(second / first - 1) <= FLAT_WITHIN,
            }
        return result


def wait_for_no_holds(data_dir: Path, timeout_s: float = 60) -> int:
    """Active holds once every user has finished (answers in flight settle within seconds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        (active,), = _query(data_dir, "SELECT count(*) FROM holds WHERE status = 'active'")
        if active == 0 or time.monotonic() > deadline:
            return active
        time.sleep(0.5)


def read_books(data_dir: Path, people: list[Person]) -> dict:
    """Top-ups acknowledged vs in the ledger; /v1's reported charges vs the ledger's; charges vs the turns' log."""
    lost = doubled = 0
    for person in people:
        (ledger_topups,), = _query(data_dir, "SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e JOIN users u "
                                             "ON u.id = e.user_id WHERE u.username = ? AND e.kind = 'topup'", (person.username,))
        lost += max(0, person.tally.topped_up - ledger_topups)
        doubled += max(0, ledger_topups - person.tally.topped_up)
        for request_id, reported in person.tally.v1_charged.items():
            (charged,), = _query(data_dir, "SELECT -coalesce(sum(amount), 0) FROM ledger_entries WHERE kind = 'charge' "
                                           "AND request_id = ?", (request_id,))
            lost += max(0, reported - charged)
            doubled += max(0, charged - reported)
    (charges,), = _query(data_dir, "SELECT -coalesce(sum(amount), 0) FROM ledger_entries WHERE kind = 'charge'")
    (logged,), = _query(data_dir, "SELECT coalesce(sum(credits_charged), 0) FROM interactions")
    statuses = dict(_query(data_dir, "SELECT status, count(*) FROM interactions GROUP BY status"))
    return {
        "lost_credits": lost, "doubled_credits": doubled,
        "charged_credits": charges, "logged_credits": logged, "charges_match_turns": charges == logged,
        "topped_up_credits": sum(p.tally.topped_up for p in people),
        "turns_by_status": statuses,
    }


def _query(data_dir: Path, sql: str, params=()) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(data_dir / "gemma_chat.db", timeout=30)) as connection:
        return connection.execute(sql, params).fetchall()
