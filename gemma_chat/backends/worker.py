"""The worker process of one local tier: `python -m gemma_chat.backends.worker`.

Started and supervised by backends/local.py. The wire format is one JSON object per line:
the app writes a config, then `generate` (with the request's optional `sampling`: temperature,
top_p) and `stop` commands, on stdin; the worker writes events on stdout (`probing`, `ready`,
`load_failed`, then per request `text`… and `done` or `error`). llama.cpp and Python write their
logs to stderr, which the app keeps the tail of: it is what the error table shows after a crash.
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


def _read_commands(commands: queue.Queue, stops: dict[int, threading.Event], stops_lock: threading.Lock) -> None:
    """stdin → `generate` commands for the main loop; `stop` is applied at once, even mid-prefill."""
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
    commands.put({"op": "exit"})  # the app went away: so do we


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
    wire.send("ready", load_ms=load_ms, n_ctx=runner.llama.n_ctx(), n_threads=runner.llama.n_threads)

    commands: queue.Queue = queue.Queue()
    stops: dict[int, threading.Event] = {}
    stops_lock = threading.Lock()
    threading.Thread(target=_read_commands, args=(commands, stops, stops_lock), daemon=True).start()
    while True:
        command = commands.get()
        if command.get("op") != "generate":
            break
        request_id = command["id"]
        with stops_lock:
            stop = stops.setdefault(request_id, threading.Event())
        _serve(wire, runner, request_id, command["messages"], stop, command.get("sampling"))
        with stops_lock:
            stops.pop(request_id, None)
    runner.close()
    return 0


def _serve(wire: _Wire, runner, request_id: int, messages, stop: threading.Event, sampling: dict | None) -> None:
    from ..errors import ContextTooLongError, ModelError
    from .base import GenerationResult, Sampling

    try:
        for item in runner.generate(messages, stop, Sampling(**sampling) if sampling else None):
            if isinstance(item, GenerationResult):
                wire.send(
                    "done", id=request_id, text=item.text, prompt_tokens=item.prompt_tokens,
                    completion_tokens=item.completion_tokens, finish_reason=item.finish_reason,
                    ttft_ms=item.ttft_ms, duration_ms=item.duration_ms,
                )
            else:
                wire.send("text", id=request_id, text=item)
    except ModelError as exc:
        kind = "context" if isinstance(exc, ContextTooLongError) else "generation"
        wire.send("error", id=request_id, kind=kind, message=exc.message, detail=exc.detail)
    except Exception as exc:  # noqa: BLE001 — an unexpected failure ends this answer, not the worker
        wire.send("error", id=request_id, kind="generation", message="The model failed to answer.", detail=repr(exc))


if __name__ == "__main__":
    sys.exit(main())
