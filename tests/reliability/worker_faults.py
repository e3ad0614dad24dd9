"""Tests only: faults injected into a real worker process.

A worker started with GEMMA_CHAT_WORKER_FAULT_INJECTION=tests.reliability.worker_faults:install
calls `install(runner)` before loading its model (gemma_chat/backends/worker.py). A marker in the
user's newest message picks the fault; any other message is answered by the real model.

  [fault:decode]  llama.cpp fails after two tokens with RuntimeError("llama_decode returned -3"),
                  raised inside the real token loop, so the runner's own error mapping runs
  [fault:abort]   after two streamed deltas the worker calls os.abort() (SIGABRT, like a GGML_ASSERT)
  [fault:segv]    after two streamed deltas the worker dies of SIGSEGV
  [fault:hang]    after two streamed deltas the worker stops producing tokens until stopped or killed
                  (the whole decode loop hangs: every slot of that worker waits)
  [fault:endless] the answer ignores the prompt format's stop strings: it runs to max_tokens
  [fault:slow]    every delta takes 0.15 s in the worker too, so the worker is busy for the whole
                  answer (tests/reliability/faults.py slows the app's side of the same answer)

The extra-buffer probe's outcome, forced either way whatever this CPU does:
  GEMMA_CHAT_SIMULATE_AMX_CRASH=1 (the app's own test switch, no hook needed): they crash, as on the
  AMX Xeon. GEMMA_CHAT_TEST_EXTRA_BUFFERS_WORK=1 (this hook): they work — the model loads with them
  off while the app believes them on, so the probe passes even on a CPU where they crash.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time

FAULT_AFTER = 2
SLOW_DELTA_S = 0.15
EXTRA_BUFFERS_WORK_ENV = "GEMMA_CHAT_TEST_EXTRA_BUFFERS_WORK"


def install(runner) -> None:
    if os.environ.get(EXTRA_BUFFERS_WORK_ENV) == "1":
        runner.config = dataclasses.replace(runner.config, extra_buffers=False)

    # The decode loop (gemma_chat/backends/batch_loop.py) calls runner.decode once per step with the
    # requests in that batch, and runner.on_text after each text delta it sends.
    real_decode = runner.decode

    def decode(batch, requests):
        for request in requests:
            if "[fault:decode]" in request.newest_message and request.completion == FAULT_AFTER:
                raise RuntimeError("llama_decode returned -3")
        real_decode(batch, requests)

    runner.decode = decode
    deltas: dict[int, int] = {}

    def on_text(request, text):
        message = request.newest_message
        if "[fault:endless]" in message:
            request.answer.stops = []
        if "[fault:slow]" in message:
            time.sleep(SLOW_DELTA_S)
        deltas[request.id] = count = deltas.get(request.id, 0) + 1
        if count == FAULT_AFTER:
            if "[fault:abort]" in message:
                print("GGML_ASSERT: simulated failed assertion", flush=True)
                os.abort()
            if "[fault:segv]" in message:
                os.kill(os.getpid(), signal.SIGSEGV)
            if "[fault:hang]" in message:
                while not request.stop.is_set():
                    time.sleep(0.01)

    runner.on_text = on_text
