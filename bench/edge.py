"""The edge's cost: (a) what the cookie session check adds to an event, (b) a signed-in user's
events during an anonymous sign-in flood, against the same user's events when idle.

(a) runs the real Edge (gemma_chat/web/edge.py) in process over a real SQLite session table, in
front of an app that answers at once: a signed-in page's `queue/join` through the edge (body read,
session_hash binding, sessions.live_session_user and the per-user event count as web/app.py wires them) against the same request
straight to the inner app, interleaved in one loop. "Cold" forgets the edge's one-second memo of live sessions
first (a page's first event after a pause); "warm" is the stream request right after its join.
The check's two parts are also timed alone.

(b) runs `python main.py` with the defaults a real install has (bcrypt cost 12, the per-address
limits); a user signs in and times a cheap queued event (new_chat: `queue/join` and its SSE stream,
what a browser does) idle, and while threads from 60 local addresses (127.0.x.1-60, fresh ones for
each rate) post wrong passwords to /auth/login: at the issue's rate (90 in 1.2 s: 75/s), ten times
it, and as fast as they are answered. Idle and flood blocks take turns, so their ratio is the
figure; on 2 cores the flood's bcrypt (two at once, by design) takes CPU the event loop would
otherwise have. Issue 21 adds floods on the other routes anonymous clients can reach (`/gradio_api/
call/*` and `queue/join` without a cookie), and pins the flood's client to a core of its own (the
app and the measuring client share the rest), as a flood from other machines would be.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import httpx

from .app import AppProcess, app_environment
from .common import Options, now, ratio, summary_ms

FLOOD_ADDRESSES = 60
FLOOD_THREADS = 16  # as fast as answered: each thread waits for its answer, as a browser's script would
PACED_THREADS = 64  # at a rate: enough threads that a slow answer (a bcrypt) does not slow the rate
# The finding: 90 anonymous sign-ins in 1.2 s filled the queue. The flood is run at that rate
# and at ten times it, then as fast as the app answers (on 2 cores shared with the flood's own
# client, that last one measures the machine as much as the app).
FLOOD_RATES = (75, 750, None)
# Issue 21: a flood on any route the edge answers for anonymous clients must not slow signed-in users
# either. Each runs as fast as it is answered. "call": Gradio's /call routes (finding A; now 404 at the
# edge); "join": the queue's door without a cookie (401); the sign-in route is the rates above.
OTHER_FLOOD_ROUTES = ("call", "join")
# The flood's client gets a core of its own (as `taskset` would): a real flood's CPU is not the
# server's. The app and the measuring client share the other cores. None: one core, no pinning.
_CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
FLOOD_CORE = _CORES[-1] if len(_CORES) > 1 else None


# --- (a) the session check, in process -----------------------------------------------------------


def measure_session_check(options: Options) -> dict:
    from gemma_chat.accounts import sessions
    from gemma_chat.store import db
    from gemma_chat.config import load_settings
    from gemma_chat.ops.startup import open_data_dir
    from gemma_chat.web.app import SESSION_COOKIE, register_with_session
    from gemma_chat.web.edge import Edge

    settings = load_settings(data_dir=options.work_dir / "edge-data", env={}, bcrypt_rounds=4)
    open_data_dir(settings)
    try:
        token = register_with_session(settings, "bench", "bench-password")
        user_id = sessions.resolve_session(settings, token).user.id
        for _ in range(1000):  # more sessions, so the lookup is not in a one-row table
            sessions.create_session(settings, user_id)

        async def inner(scope, receive, send):  # answers at once, as cheaply as anything can
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"event_id": "x"}'})

        def live_user(cookie: str) -> int | None:  # what web/app.py hands the edge
            return sessions.live_session_user(settings, cookie)

        others_queued = [uuid.uuid4().hex for _ in range(64)]  # the per-user cap counts over a busy queue
        edge = Edge(inner, settings, live_user=live_user, queued_sessions=lambda: others_queued)
        session_hash = uuid.uuid4().hex
        body = json.dumps({"data": [], "fn_index": 3, "session_hash": session_hash, "event_data": None, "trigger_id": None}).encode()
        headers = [(b"host", b"127.0.0.1:7860"), (b"content-type", b"application/json"),
                   (b"cookie", f"{SESSION_COOKIE}={token}".encode()), (b"origin", b"http://127.0.0.1:7860")]
        scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "query_string": b"",
                 "headers": headers, "scheme": "http", "client": ("127.0.0.1", 50000)}

        async def one(app) -> float:
            async def receive():
                return {"type": "http.request", "body": body, "more_body": False}

            statuses = []

            async def send(message):
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            started = now()
            await app(dict(scope), receive, send)
            elapsed = now() - started
            if statuses != [200]:
                raise RuntimeError(f"the edge refused the benchmark's signed-in request: {statuses}")
            return elapsed

        async def run(n: int) -> dict[str, list[float]]:
            times = {"warm": [], "cold": [], "bare": []}
            for _ in range(50):  # warm-up: the thread pool, SQLite's page cache
                await one(edge)
                await one(inner)
            for _ in range(n):
                times["warm"].append(await one(edge))  # the session was looked up < 1 s ago
                edge.recently_live.clear()
                times["cold"].append(await one(edge))  # a page's first event after a pause: the lookup
                times["bare"].append(await one(inner))
            return times

        n = 300 if options.quick else 2000
        times = asyncio.run(run(n))
        lookups, bindings = [], []
        for _ in range(n):
            started = now()
            live_user(token)
            lookups.append(now() - started)
            started = now()
            edge.bindings.allows(session_hash, "identity")
            bindings.append(now() - started)
    finally:
        db.close_database()
    cold, warm, bare = (summary_ms(times[side]) for side in ("cold", "warm", "bare"))
    return {
        "requests": n,
        "through_edge_cold": cold,
        "through_edge_warm": warm,
        "inner_app_alone": bare,
        "added_p50_ms": round(cold["p50_ms"] - bare["p50_ms"], 3),
        "added_p95_ms": round(cold["p95_ms"] - bare["p95_ms"], 3),
        "added_warm_p95_ms": round(warm["p95_ms"] - bare["p95_ms"], 3),
        "has_live_session": summary_ms(lookups),
        "binding_check": summary_ms(bindings),
    }


# --- (b) a signed-in user during an anonymous sign-in flood --------------------------------------


class SignedInPage:
    """One signed-in browser page: its cookie, its session_hash, its cheap event."""

    def __init__(self, app: AppProcess):
        self.url = app.url
        registered = httpx.post(app.url + "auth/register", json={"username": "bench", "password": "bench-password"}, timeout=60)
        token = registered.cookies.get("gemma_session")
        if registered.status_code != 200 or not token:
            raise RuntimeError(f"could not register the benchmark user: {registered.status_code} {registered.text}")
        self.http = httpx.Client(timeout=60, headers={"Cookie": f"gemma_session={token}"})
        config = self.http.get(app.url + "config").json()
        self.dependencies = {d.get("api_name"): (i, d) for i, d in enumerate(config["dependencies"])}
        self.session_hash = uuid.uuid4().hex
        self.call("restore")  # the page's load event: the signed-in screen

    def call(self, api_name: str, data: list | None = None) -> float:
        index, dependency = self.dependencies[api_name]
        body = {"data": data or [], "fn_index": index, "session_hash": self.session_hash, "event_data": None, "trigger_id": None}
        started = now()
        if not dependency.get("queue", True):
            response = self.http.post(self.url + "gradio_api/run/predict", json=body)
            response.raise_for_status()
            return now() - started
        joined = self.http.post(self.url + "gradio_api/queue/join", json=body)
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        with self.http.stream("GET", self.url + "gradio_api/queue/data", params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    if message.get("event_id") == event_id and message.get("msg") == "process_completed":
                        if not message.get("success"):
                            raise RuntimeError(f"the app failed the event: {message}")
                        return now() - started
        raise RuntimeError("the event's stream ended without completing")

    def close(self) -> None:
        self.http.close()


def _flood_request(route: str, host: str, port: int, n: int) -> bytes:
    """One anonymous request of the flood: a wrong sign-in, a /call, or a queue join without a cookie."""
    if route == "call":
        path, body = "/gradio_api/call/top_up", {"data": [5]}
    elif route == "join":
        path, body = "/gradio_api/queue/join", {"data": [], "fn_index": 0, "session_hash": f"flood{n}", "event_data": None}
    else:
        path, body = "/auth/login", {"username": f"flood{n}", "password": "a wrong guess"}
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
    return head + data


def _flood(url: str, rate: float | None, network: int, go, stop, quiet, results, route: str = "auth") -> None:
    """In its own process (the measuring client must not share a GIL with it): threads posting
    wrong passwords for made-up names from 127.0.`network`.1 … .60 while `go` is set, `rate` a
    second in all (None: each thread as fast as it is answered); `quiet` is set once paused with no
    attempt in flight (no bcrypt of ours left in the app); until `stop`.

    Raw sockets, one connection per attempt: a real flood comes over the network and its clients'
    CPU is not the server's; here they share the cores with the app, so they must cost little.
    """
    if FLOOD_CORE is not None:
        os.sched_setaffinity(0, {FLOOD_CORE})  # before its threads start: they inherit it
    host, port = urlsplit(url).hostname, urlsplit(url).port
    lock = threading.Lock()
    counts: dict[int, int] = {}
    busy = [0]

    def attempt(address: str, n: int) -> int:
        with socket.create_connection((host, port), timeout=60, source_address=(address, 0)) as connection:
            connection.sendall(_flood_request(route, host, port, n))
            answer = connection.recv(64)  # b"HTTP/1.1 429 ..."
        return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0

    threads = PACED_THREADS if rate else FLOOD_THREADS
    interval = threads / rate if rate else 0.0  # each thread's share of the rate

    def run(n: int) -> None:
        tries = 0
        due = time.monotonic() + interval * n / threads  # threads spread over one interval
        while not stop.is_set():
            if not go.wait(0.1):
                continue
            if interval:
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                due = max(due + interval, now - interval)  # after a pause, no burst to catch up
            with lock:
                busy[0] += 1
            address = f"127.0.{network}.{(n + tries * threads) % FLOOD_ADDRESSES + 1}"
            tries += 1
            try:
                status = attempt(address, n * 1_000_000 + tries)
            except OSError:
                status = 0  # refused or reset
            with lock:
                counts[status] = counts.get(status, 0) + 1
                busy[0] -= 1
                if busy[0] == 0 and not go.is_set():
                    quiet.set()

    runners = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    results.put({"statuses": counts, "cpu_s": time.process_time()})  # its own CPU: it shares the cores


class SignInFlood:
    """The flood process: started once, switched on and off between blocks of measured events."""

    def __init__(self, url: str, rate: float | None, network: int, route: str = "auth"):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._go, self._stop, self._quiet = context.Event(), context.Event(), context.Event()
        self._results = context.Queue()
        self._process = context.Process(
            target=_flood, args=(url, rate, network, self._go, self._stop, self._quiet, self._results, route), daemon=True
        )
        self.active_s = 0.0

    def __enter__(self) -> "SignInFlood":
        self._process.start()
        return self

    def resume(self) -> None:
        self._quiet.clear()
        self._go.set()
        self._since = time.monotonic()

    def pause(self) -> None:
        self._go.clear()
        if not self._quiet.wait(180):
            raise RuntimeError("the sign-in flood's requests did not end in 3 minutes")
        self.active_s += time.monotonic() - self._since

    def __exit__(self, *exc) -> None:
        self._go.clear()
        self._stop.set()
        figures = self._results.get(timeout=120)
        self._process.join(timeout=60)
        self.cpu_s = figures["cpu_s"]
        self.statuses = figures["statuses"]


def _cpu_s(process) -> float:
    """CPU seconds so far of the web process alone (its threads: event loop, handlers, bcrypt)."""
    times = process.cpu_times()
    return times.user + times.system


def _flood_at(page: "SignedInPage", web, url: str, rate: float | None, network: int, n: int, blocks: int, route: str = "auth") -> dict:
    """A signed-in page's events idle and during a flood of `rate` a second from fresh addresses
    (127.0.`network`.x: each rate meets its own bcrypt first, then the limits' 429s)."""
    idle, during = [], []
    cpu = {"idle": 0.0, "flood": 0.0}
    spent = {"idle": 0.0, "flood": 0.0}

    def block(side: str, into: list) -> None:
        began_cpu, began = _cpu_s(web), time.monotonic()
        into.extend(page.call("new_chat", [""]) for _ in range(n // blocks))  # input: the sidebar's search box
        cpu[side] += _cpu_s(web) - began_cpu
        spent[side] += time.monotonic() - began

    # Idle and flood take turns block by block, so the rest of the machine's load weighs on both.
    with SignInFlood(url, rate, network, route) as flood:
        for _ in range(blocks):
            block("idle", idle)
            flood.resume()
            time.sleep(1.0)  # the lane is full and sign-ins are being turned away
            block("flood", during)
            flood.pause()  # and wait until none of the flood's bcrypt is left in the app
    idle_s, flood_s = summary_ms(idle), summary_ms(during)
    answered = sum(flood.statuses.values())
    return {
        "route": route,
        "rate_asked_per_s": rate,
        "events_per_side": n // blocks * blocks,
        "idle": idle_s,
        "during_flood": flood_s,
        "p50_ratio": ratio(flood_s["p50_ms"], idle_s["p50_ms"]),
        "p95_ratio": ratio(flood_s["p95_ms"], idle_s["p95_ms"]),
        "flood": {
            "threads": PACED_THREADS if rate else FLOOD_THREADS, "addresses": FLOOD_ADDRESSES, "blocks": blocks, "active_s": round(flood.active_s, 2),
            "requests_per_s": round(answered / flood.active_s, 1) if flood.active_s else None,
            "statuses": flood.statuses,
            "flood_client_cores": round(flood.cpu_s / flood.active_s, 2) if flood.active_s else None,
        },
        "web_process_cores": {
            "idle": round(cpu["idle"] / spent["idle"], 2), "during_flood": round(cpu["flood"] / spent["flood"], 2),
        },
    }


def _keep_off_the_flood_core(web) -> None:
    """The web process's threads (and this measuring process) on the cores the flood does not use."""
    if FLOOD_CORE is None:
        return
    others = set(_CORES) - {FLOOD_CORE}
    for thread in web.threads():
        try:
            os.sched_setaffinity(thread.id, others)
        except OSError:
            pass  # a thread that ended meanwhile
    os.sched_setaffinity(0, others)


def measure_flood(options: Options) -> dict:
    """_flood_at for each of FLOOD_RATES, on one app; keyed by the rate ("max": as fast as answered)."""
    import psutil

    data_dir = options.work_dir / "edge-flood-data"
    tier = {"model_file": str(options.model), "max_tokens": 8, "n_ctx": 1024, "n_threads": options.n_threads, "required_quantization": ""}
    # The defaults of a real install: bcrypt cost 12 and the per-address limits (app_environment lowers bcrypt).
    env = app_environment(data_dir, {"mini": tier, "pro": tier}, GEMMA_CHAT_BCRYPT_ROUNDS="12")
    options.say("  starting the app with bcrypt cost 12 and the default sign-in limits…")
    app = AppProcess(data_dir, env, options.work_dir / "edge-app.log")
    by_rate = {}
    try:
        app.wait_until_up()
        page = SignedInPage(app)
        try:
            n, blocks = (20, 2) if options.quick else (60, 6)
            for _ in range(5):
                page.call("new_chat", [""])
            web = psutil.Process(app.process.pid)
            _keep_off_the_flood_core(web)
            floods = [("auth", rate) for rate in FLOOD_RATES] + [(route, None) for route in OTHER_FLOOD_ROUTES]
            for network, (route, rate) in enumerate(floods, start=1):
                key = str(rate or "max") if route == "auth" else route
                by_rate[key] = _flood_at(page, web, app.url, rate, network, n, blocks, route)
                options.say(f"    {route} flood at {rate or 'max'}/s: p95 x{by_rate[key]['p95_ratio']} of idle")
        finally:
            page.close()
    finally:
        app.stop()
        if _CORES:
            os.sched_setaffinity(0, set(_CORES))  # the next bench section gets every core back
    return by_rate


def measure_edge(options: Options) -> dict:
    options.say("  (a) the session check, in process…")
    check = measure_session_check(options)
    options.say(f"    added p95 {check['added_p95_ms']} ms over {check['requests']} requests")
    options.say("  (b) a signed-in user's events, idle and during an anonymous sign-in flood…")
    return {"session_check": check, "flood": measure_flood(options)}

