"""A local tier: its llama.cpp model in a worker process that this module starts and supervises.

A native fault in llama.cpp (SIGSEGV, an abort, a GGML_ASSERT, the OOM killer) ends only the
worker: the answer in flight fails with WorkerCrashedError (the chat turn releases its hold), the
error table gets the exit signal and the worker's last stderr lines, and the worker restarts with
backoff while waiting users see that it is restarting. After `worker_crash_limit` crashes within
`worker_crash_window_s` the tier stays unavailable, with the reason, until `restart()` (the Admin
tab) or an app restart. The worker decodes up to `slots` requests together (the memory plan's
choice, see inference/model_files.py); the tier's queue admits that many and keeps the rest waiting with their
positions. A crash fails every request in flight, each on its own.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..config import Settings, TierSettings, physical_cores
from ..errors import ContextTooLongError, GemmaChatError, GenerationError, ModelUnavailableError, WorkerCrashedError
from .base import (
    WAIT_POLL_S, GenerationResult, Message, ModelPlan, Sampling, TierLoad, TierQueue, TierStatus, Waiting, ms_since,
    normalize_messages,
)
from .cpu_features import ExtraBuffers, remember_extra_buffers

logger = logging.getLogger("gemma_chat")

CRASH_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # before the 1st, 2nd, … restart in a row
STDERR_TAIL_LINES = 30
STOP_POLL_S = 0.05  # how often a stream checks its Stop event while no token arrives (prefill)
CLOSE_WAIT_S = 10.0
CRASH_MESSAGE = "The model stopped unexpectedly."
# Workers load (start Python, import llama_cpp, read the model) at most one per spare core at a time:
# on 2 cores, two loads beside the web process's start-up (import gradio, the one thing every start
# waits for) took a third of its core. A load that takes longer than LOAD_SLOT_WAIT_S lets the next
# one start anyway, so a slow or stuck load never keeps another tier waiting for long.
LOAD_SLOTS = threading.BoundedSemaphore(max(1, (os.cpu_count() or 2) - 1))
LOAD_SLOT_WAIT_S = 30.0

LOADING, READY, RESTARTING, FAILED, CRASHED, CLOSED = "loading", "ready", "restarting", "failed", "crashed", "closed"


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        note = " (killed: often the out-of-memory killer)" if -returncode == signal.SIGKILL else ""
        return f"{name} (signal {-returncode}){note}"
    return f"exit code {returncode}"


@dataclass(frozen=True)
class WorkerExit:
    returncode: int
    stderr_tail: str
    during_probe: bool  # died after "probing", before "ready": the extra buffer types crashed

    @property
    def description(self) -> str:
        return describe_exit(self.returncode)

    @property
    def detail(self) -> str:
        return f"worker exited with {self.description}; last stderr lines:\n{self.stderr_tail or '(none)'}"


class WorkerProcess:
    """One running worker: its pipes, two reader threads, and the requests it is serving."""

    def __init__(self, tier: str, start: dict, env: dict[str, str]):
        self.process = subprocess.Popen(
            # --tier is for `ps` and the tests: the worker itself reads its config from stdin.
            [sys.executable, "-m", "gemma_chat.backends.worker", "--tier", tier],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        self.lifecycle: queue.Queue = queue.Queue()  # probing / ready / load_failed / exit
        self.exit: WorkerExit | None = None
        self.exited = threading.Event()
        self._requests: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self._stderr = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._probing = False
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self.send(start)

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, message: dict) -> None:
        line = (json.dumps(message, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            try:
                self.process.stdin.write(line)
                self.process.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):  # it died: the exit event tells the waiters
                pass

    def register(self, request_id: int) -> queue.Queue:
        events: queue.Queue = queue.Queue()
        with self._lock:
            if self.exit is not None:
                events.put({"ev": "exit"})
            self._requests[request_id] = events
        return events

    def unregister(self, request_id: int) -> None:
        with self._lock:
            self._requests.pop(request_id, None)

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if "id" in event:
                with self._lock:
                    events = self._requests.get(event["id"])
                if events is not None:
                    events.put(event)
            else:
                self._probing = self._probing or event["ev"] == "probing"
                self.lifecycle.put(event)
        self._stderr_reader.join(timeout=2)  # the tail must hold the last words before we report them
        returncode = self.process.wait()
        with self._lock:
            self.exit = WorkerExit(returncode, "".join(self._stderr).strip(), during_probe=self._probing)
            waiting = list(self._requests.values())
        for events in waiting:
            events.put({"ev": "exit"})
        self.lifecycle.put({"ev": "exit"})
        self.exited.set()

    def _read_stderr(self) -> None:
        for raw in self.process.stderr:
            self._stderr.append(raw.decode("utf-8", errors="replace"))

    def note_ready(self) -> None:
        self._probing = False

    def stop(self, timeout: float = 5.0) -> None:
        """Ask it to exit (stdin closes), then kill it if it does not."""
        with self._lock:
            for request_id in self._requests:
                try:
                    self.process.stdin.write((json.dumps({"op": "stop", "id": request_id}) + "\n").encode())
                except (BrokenPipeError, ValueError, OSError):
                    pass
            try:
                self.process.stdin.close()
            except (BrokenPipeError, ValueError, OSError):
                pass
        if not self.exited.wait(timeout):
            self.process.kill()
            self.exited.wait(timeout)


class LocalWorkerBackend:
    """One local tier: a supervised worker, its queue, and its state for the status line."""

    def __init__(
        self,
        settings: Settings,
        tier: TierSettings,
        status: ModelPlan,
        extra_buffers: ExtraBuffers,
        *,
        model_path: Callable[[], Path],
        log: Callable[[str], None] = print,
        record_crash: Callable[[str, BaseException, str], None] | None = None,
    ):
        self.settings, self.tier, self.model_status = settings, tier, status
        self._model_path = model_path  # called at each worker start: the bundled demo may need unpacking first
        self.label = status.model
        self.extra_buffers = extra_buffers
        self._log = log
        self._record_crash = record_crash
        self._state, self._reason = LOADING, status.reason
        self._n_ctx = status.n_ctx
        self._changed = threading.Condition()
        self._worker: WorkerProcess | None = None
        self._crashes: collections.deque[float] = collections.deque()
        self.restarts = 0  # worker crashes since start-up (each is followed by a restart or a "crashed" tier)
        self._restart_requested = threading.Event()
        self._closing = threading.Event()
        self._request_ids = itertools.count(1)
        self._cache_counts = collections.Counter()  # answers, cache_hits, prompt_tokens_reused / _prefilled
        self._cache_counts_lock = threading.Lock()
        self._queue = TierQueue(
            self.label, slots=status.slots, max_waiting=settings.queue_size, restarting=lambda: self._state != READY
        )
        self._supervisor = threading.Thread(target=self._supervise, name=f"worker-{tier.name}", daemon=True)
        self._supervisor.start()

    # --- status ---

    @property
    def state(self) -> str:
        return self._state

    @property
    def worker_pid(self) -> int | None:
        worker = self._worker
        return worker.pid if worker is not None and worker.exit is None else None

    def status(self) -> TierStatus:
        return TierStatus(
            tier=self.tier.name, label=self.label, price=self.tier.price,
            available=self._state in (LOADING, READY, RESTARTING), reason=self._reason,
            is_demo=self.model_status.is_demo, max_tokens=self.tier.max_tokens, n_ctx=self._n_ctx,
            backend="local", state=self._state, slots=self._queue.slots, **dict(self._cache_counts),
        )

    def load(self) -> TierLoad:
        return TierLoad(self._queue.running, self._queue.waiting, self._queue.slots, self.restarts)

    def _set_state(self, state: str, reason: str | None = None) -> None:
        with self._changed:
            self._state = state
            if reason is not None:
                self._reason = reason
            self._changed.notify_all()

    def wait_until_loaded(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._state != LOADING, timeout=timeout)

    # --- supervision ---

    def _start_message(self) -> dict:
        status, tier = self.model_status, self.tier
        config = dict(
            model_path=str(self._model_path().resolve()), label=self.label, n_ctx=status.n_ctx,
            n_threads=tier.n_threads or physical_cores(), n_gpu_layers=tier.n_gpu_layers,
            max_tokens=tier.max_tokens, temperature=tier.temperature, extra_buffers=self.extra_buffers.enabled,
            parallel=status.slots, prompt_cache_mb=tier.prompt_cache_mb,
        )
        return {"config": config, "probe": self.extra_buffers.probe}

    def _supervise(self) -> None:
        try:
            self._supervise_workers()
        except Exception as exc:  # noqa: BLE001 — a bug here must leave a reason, never a tier stuck "loading"
            logger.exception("the %s worker supervisor failed", self.tier.name)
            self._set_state(FAILED, f"The model's supervisor failed ({type(exc).__name__}: {exc}); restart the app.")

    def _supervise_workers(self) -> None:
        began = time.monotonic()
        while not self._closing.is_set():
            try:
                worker, outcome = self._load_worker()
            except (GemmaChatError, OSError) as exc:
                self._fail(f"Could not start the model: {getattr(exc, 'message', exc)}")
                continue
            if outcome["ev"] == "ready":
                self._on_ready(worker, outcome, began)
                while not (worker.exited.wait(0.5) or self._closing.is_set()):
                    pass
            elif outcome["ev"] == "load_failed":
                self._fail(f"Could not load {self.model_status.file.name}: {outcome['message']}")
                continue
            if self._closing.is_set():
                break
            self._after_crash(worker.exit)
            began = time.monotonic()
        self._set_state(CLOSED, "The app is shutting down.")

    def _load_worker(self) -> tuple[WorkerProcess, dict]:
        """A new worker and how its load ended (ready, load_failed or exit), in one of LOAD_SLOTS."""
        slot = LOAD_SLOTS.acquire(timeout=LOAD_SLOT_WAIT_S)
        try:
            worker = WorkerProcess(self.tier.name, self._start_message(), dict(os.environ))
            self._worker = worker
            return worker, self._wait_for_ready(worker)
        finally:
            if slot:
                LOAD_SLOTS.release()

    def _wait_for_ready(self, worker: WorkerProcess) -> dict:
        while True:
            event = worker.lifecycle.get()
            if event["ev"] in ("ready", "load_failed", "exit"):
                return event

    def _on_ready(self, worker: WorkerProcess, event: dict, began: float) -> None:
        worker.note_ready()
        self._n_ctx = event["n_ctx"]
        if self.extra_buffers.probe:  # the first load on this CPU: remember what worked
            self.extra_buffers = remember_extra_buffers(
                self.settings, self.extra_buffers.enabled, detail=getattr(self, "_probe_crash_detail", "")
            )
        self._set_state(READY, self.model_status.reason)
        slots = event.get("slots", 1)
        self._log(
            f"{self.tier.name}: {self.label} loaded in {time.monotonic() - began:.1f} s "
            f"(worker pid {worker.pid}, n_ctx {event['n_ctx']}, {event['n_threads']} threads, "
            f"{slots} slot{'s' if slots != 1 else ''}, {event.get('gpu') or 'CPU'}) — {self.model_status.reason}"
        )

    def _fail(self, reason: str) -> None:
        """A clean failure (bad file): no retry until an admin asks for one."""
        self._log(f"{self.tier.name}: {self.label} unavailable — {reason}")
        self._set_state(FAILED, reason)
        self._wait_for_restart()

    def _wait_for_restart(self) -> None:
        while not (self._restart_requested.wait(0.5) or self._closing.is_set()):
            pass
        self._restart_requested.clear()
        self._crashes.clear()
        if not self._closing.is_set():
            self._set_state(RESTARTING, "Restarting at an administrator's request.")

    def _after_crash(self, exit: WorkerExit) -> None:
        if exit.during_probe and self.extra_buffers.enabled:
            # The first decode with extra buffer types on killed it: the AMX crash. Retry without them.
            self._probe_crash_detail = exit.detail
            self.extra_buffers = dataclasses.replace(
                self.extra_buffers, enabled=False, reason="off — they crashed on this CPU"
            )
            # Expected on such CPUs, and learnt once per machine: a line in the log, not an error row.
            self._log(f"{self.tier.name}: the worker crashed with CPU extra buffers on ({exit.description}); restarting with them off")
            return
        now = time.monotonic()
        self.restarts += 1
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > self.settings.worker_crash_window_s:
            self._crashes.popleft()
        self._report_crash(exit)
        if len(self._crashes) >= self.settings.worker_crash_limit:
            minutes = self.settings.worker_crash_window_s / 60
            times = "once" if len(self._crashes) == 1 else f"{len(self._crashes)} times"
            reason = (
                f"The model stopped {times} within {minutes:g} minutes (last: {exit.description}); "
                "an administrator can restart it from the Admin tab, or restart the app."
            )
            self._log(f"{self.tier.name}: {self.label} unavailable — {reason}")
            self._set_state(CRASHED, reason)
            self._wait_for_restart()
            return
        delay = CRASH_BACKOFF_S[min(len(self._crashes), len(CRASH_BACKOFF_S)) - 1]
        self._set_state(RESTARTING, f"Restarting after a crash ({exit.description}).")
        self._log(f"{self.tier.name}: the worker stopped ({exit.description}); restarting in {delay:g} s")
        self._closing.wait(delay)

    def _report_crash(self, exit: WorkerExit) -> None:
        if self._record_crash is not None:
            crashed = WorkerCrashedError("The {label} worker stopped.", label=self.label)
            self._record_crash(f"worker:{self.tier.name}", crashed, exit.detail)

    def restart(self) -> None:
        """An administrator's restart: brings a crashed or failed tier back (a running one is left alone)."""
        if self._state in (CRASHED, FAILED):
            self._restart_requested.set()

    # --- generation ---

    def generate(
        self, messages: Sequence[Message], *, stop: threading.Event | None = None, sampling: Sampling | None = None
    ) -> Iterator[Waiting | str | GenerationResult]:
        turns = normalize_messages(messages)
        if self._state in (FAILED, CRASHED, CLOSED):
            raise ModelUnavailableError(
                "The {label} model is not available: {reason}", detail=self._reason, label=self.label, reason=self._reason
            )
        queued_at = time.monotonic()
        yield from self._queue.acquire()
        try:
            worker = yield from self._ready_worker()
            yield from self._run(worker, turns, stop, sampling, queued_ms=ms_since(queued_at))
        finally:
            self._queue.release()

    def _ready_worker(self) -> Iterator[Waiting]:
        while True:
            with self._changed:
                worker = self._worker
                if self._state == READY and worker is not None and worker.exit is None:
                    return worker
                if self._state in (FAILED, CRASHED, CLOSED):
                    raise ModelUnavailableError(
                        "The {label} model is not available: {reason}", detail=self._reason, label=self.label, reason=self._reason
                    )
            yield Waiting(1, restarting=True)
            with self._changed:
                self._changed.wait(WAIT_POLL_S)

    def _run(
        self, worker: WorkerProcess, turns, stop: threading.Event | None, sampling: Sampling | None, *, queued_ms: int
    ) -> Iterator[str | GenerationResult]:
        request_id = next(self._request_ids)
        events = worker.register(request_id)
        finished = stop_sent = False
        try:
            command = {"op": "generate", "id": request_id, "messages": turns}
            if sampling is not None:
                command["sampling"] = sampling.as_dict()
            worker.send(command)
            while True:
                if stop is not None and stop.is_set() and not stop_sent:
                    worker.send({"op": "stop", "id": request_id})
                    stop_sent = True
                try:
                    event = events.get(timeout=STOP_POLL_S if stop is not None and not stop_sent else None)
                except queue.Empty:
                    continue
                kind = event["ev"]
                if kind == "text":
                    yield event["text"]
                    continue
                finished = True
                if kind == "done":
                    self._count_cache(event)
                    yield GenerationResult(
                        text=event["text"], prompt_tokens=event["prompt_tokens"],
                        completion_tokens=event["completion_tokens"], finish_reason=event["finish_reason"],
                        ttft_ms=event["ttft_ms"], duration_ms=event["duration_ms"], model_label=self.label,
                        queued_ms=queued_ms, cache=event.get("cache", ""),
                        prompt_tokens_reused=event.get("prompt_tokens_reused", 0),
                    )
                    return
                if kind == "error":
                    error = ContextTooLongError if event["kind"] == "context" else GenerationError
                    # the template and its parameters come along so that the UI can translate it
                    raise error(event.get("template", event["message"]), detail=event["detail"], **event.get("params", {}))
                raise WorkerCrashedError(CRASH_MESSAGE, detail=worker.exit.detail)
        finally:
            if not finished:  # the consumer went away mid-answer: the worker stops at its next token
                worker.send({"op": "stop", "id": request_id})
            worker.unregister(request_id)

    def _count_cache(self, event: dict) -> None:
        reused = event.get("prompt_tokens_reused", 0)
        with self._cache_counts_lock:
            self._cache_counts.update(
                answers=1, cache_hits=int(bool(event.get("cache"))), prompt_tokens_reused=reused,
                prompt_tokens_prefilled=event.get("prompt_tokens_prefilled", event["prompt_tokens"] - reused),
            )

    def close(self) -> None:
        self._closing.set()
        worker = self._worker
        if worker is not None:
            worker.stop()
        self._queue.close(timeout=CLOSE_WAIT_S)
        self._supervisor.join(timeout=CLOSE_WAIT_S)
