"""The worker process of one local tier: `python -m gemma_chat.backends.worker`.

Started and supervised by backends/local.py. The wire format is one JSON object per line:
the app writes a config, then `generate` (with the request's optional `sampling`: temperature,
top_p, max_tokens) and `stop` commands, on stdin; the worker writes events on stdout (`probing`,
`ready`, `load_failed`, then per request `text`… and `done` or `error`). Up to `parallel` requests
are decoded together (backends/batch_loop.py); their events interleave, each with its id.
llama.cpp and Python write their logs to stderr, which the app keeps the tail of: it is what the
error table shows after a crash.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import signal
import sys
import threading
import time

# Tests only: "module:function" called with the LlamaRunner before it loads, to inject faults
# (a crash in the probe, os.abort() mid-answer) into a real worker.
FAULT_INJECTION_ENV = "GEMMA_CHAT_WORKER_FAULT_INJECTION"


class _Wire:
    """Events out on the real stdout; anything else printing to fd 1 lands on stderr instead."""

    def __init__(self):
        self._out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)  # native code printing to stdout must not corrupt the protocol
        sys.stdout = sys.stderr
        self._lock = threading.Lock()

    def send(self, event: str, **fields) -> None:
        line = json.dumps({"ev": event, **fields}, ensure_ascii=False)
        with self._lock:
            self._out.write(line + "\n")


def _read_commands(
    commands: queue.Queue, stops: dict[int, threading.Event], stops_lock: threading.Lock, closing: threading.Event
) -> None:
    """stdin → `generate` commands for the decode loop; `stop` sets the request's event at once."""
    for line in sys.stdin:
        try:
            command = json.loads(line)
        except ValueError:
            continue
        if command.get("op") == "stop":
            with stops_lock:
                stops.setdefault(command["id"], threading.Event()).set()
        else:
            commands.put(command)
    closing.set()  # the app went away: so do we (a prefill in progress is aborted)
    commands.put({"op": "exit"})


def main() -> int:
    # Ctrl-C in a terminal reaches the whole process group: the app decides when its workers stop
    # (it closes their stdin), so a shutdown never looks like a crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wire = _Wire()
    from .llama_runner import LlamaRunner, RunnerConfig  # after the wire: importing llama_cpp may print

    start = json.loads(sys.stdin.readline())  # {"config": RunnerConfig fields, "probe": bool}
    config, probe = RunnerConfig(**start["config"]), start["probe"]
    runner = LlamaRunner(config)
    hook = os.environ.get(FAULT_INJECTION_ENV, "")
    if hook:
        module, _, function = hook.partition(":")
        getattr(importlib.import_module(module), function)(runner)
    began = time.monotonic()
    try:
        runner.load()
    except Exception as exc:  # a bad file or template: a clean failure, not a crash to retry
        wire.send("load_failed", message=str(exc) or type(exc).__name__)
        return 0
    load_ms = int((time.monotonic() - began) * 1000)
    if probe:
        wire.send("probing")
        runner.probe()
    wire.send(
        "ready", load_ms=load_ms, n_ctx=runner.n_ctx, n_threads=runner.n_threads, slots=config.parallel,
        gpu=runner.gpu,
    )
    _serve(wire, runner)
    runner.close()
    return 0


def _serve(wire: _Wire, runner) -> None:
    """Feed commands to the decode loop until stdin closes: block while idle, poll while decoding."""
    from .batch_loop import BatchLoop

    commands: queue.Queue = queue.Queue()
    stops: dict[int, threading.Event] = {}
    stops_lock = threading.Lock()
    closing = threading.Event()
    threading.Thread(target=_read_commands, args=(commands, stops, stops_lock, closing), daemon=True).start()

    def send(event: str, **fields) -> None:
        if event in ("done", "error"):  # the request is over: forget its Stop
            with stops_lock:
                stops.pop(fields["id"], None)
        wire.send(event, **fields)

    loop = BatchLoop(runner, send, closing=closing)
    try:
        while not closing.is_set():
            try:
                command = commands.get(block=not loop.busy)
            except queue.Empty:
                command = None
            while command is not None:
                if command.get("op") != "generate":
                    return
                with stops_lock:
                    stop = stops.setdefault(command["id"], threading.Event())
                loop.submit(command["id"], command["messages"], stop, command.get("sampling"))
                command = commands.get_nowait() if not commands.empty() else None
            try:
                loop.step()
            except Exception as exc:  # noqa: BLE001 — a bug ends the answers in flight, not the worker
                loop.fail_all(exc)
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
