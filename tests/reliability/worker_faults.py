"""Tests only: faults injected into a real worker process.

A worker started with GEMMA_CHAT_WORKER_FAULT_INJECTION=tests.reliability.worker_faults:install
calls `install(runner)` before loading its model (gemma_chat/backends/worker.py). A marker in the
user's newest message picks the fault; any other message is answered by the real model.

  [fault:decode]  llama.cpp fails after two tokens with RuntimeError("llama_decode returned -3"),
                  raised inside the real token loop, so the runner's own error mapping runs
  [fault:abort]   after two streamed deltas the worker calls os.abort() (SIGABRT, like a GGML_ASSERT)
  [fault:segv]    after two streamed deltas the worker dies of SIGSEGV
  [fault:hang]    after two streamed deltas the worker stops producing tokens until stopped or killed
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
    pending = {"decode": False}

    if os.environ.get(EXTRA_BUFFERS_WORK_ENV) == "1":
        runner.config = dataclasses.replace(runner.config, extra_buffers=False)

    real_load = runner.load

    def load():
        real_load()
        real_llama_generate = runner.llama.generate

        def llama_generate(tokens, **kwargs):
            stream = real_llama_generate(tokens, **kwargs)
            if not pending["decode"]:
                return stream
            pending["decode"] = False

            def failing():
                try:
                    for count, token in enumerate(stream):
                        if count == FAULT_AFTER:
                            raise RuntimeError("llama_decode returned -3")
                        yield token
                finally:
                    stream.close()

            return failing()

        runner.llama.generate = llama_generate

    runner.load = load
    real_generate = runner.generate

    def generate(turns, stop, sampling=None):
        text = turns[-1]["content"]
        pending["decode"] = "[fault:decode]" in text
        deltas = 0
        slow = "[fault:slow]" in text
        for item in real_generate(turns, stop, sampling):
            if slow and isinstance(item, str):
                time.sleep(SLOW_DELTA_S)
            yield item
            deltas += isinstance(item, str)
            if deltas == FAULT_AFTER:
                if "[fault:abort]" in text:
                    print("GGML_ASSERT: simulated failed assertion", flush=True)
                    os.abort()
                if "[fault:segv]" in text:
                    os.kill(os.getpid(), signal.SIGSEGV)
                if "[fault:hang]" in text:
                    while not stop.is_set():
                        time.sleep(0.01)

    runner.generate = generate
