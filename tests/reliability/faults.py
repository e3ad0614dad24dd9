"""Tests only: model faults injected into a real running app.

`python main.py` started with GEMMA_CHAT_FAULT_INJECTION=tests.reliability.faults:inject wraps its
loaded Engine in FaultyEngine (see gemma_chat/serve.py). A marker in the user's message picks the
fault, so one running app serves every fault test; any other message goes to the real engine.

  [fault:raise]   the model raises an unexpected exception after two streamed deltas
  [fault:decode]  (and the worker-process faults) see tests/reliability/worker_faults.py
  [fault:slow]    the real answer, but every delta takes 0.15 s and the whole answer at least 4 s
                  (the tier stays busy meanwhile): time to SIGKILL mid-answer, or to fill the queue
  [fault:html]    the answer is markup, to check that it is shown as text and never runs
  [fault:markdown] the answer is markdown (heading, list, table, link, code) mixed with markup that
                  must stay inert: what Gemma writes, and what an attacker would like it to write
  [fault:numbered] the answer is "Answer number N." (N counts these answers): two answers to the
                  same prompt always differ
  [fault:wide]    the answer has a 300-character code line and a 200-letter word (phone width)

With GEMMA_CHAT_TEST_PROMPT_LOG=path every generation's messages are appended to that file as one
JSON line: the prompt the engine got, for tests to read.
"""

from __future__ import annotations

import itertools
import json
import os
import time

from gemma_chat.inference.engine import GenerationResult

MARKDOWN_ANSWER = """## Plan

- **first** step
- second step

| name | value |
|------|-------|
| a    | 1     |

[the docs](https://example.com/docs) and [a trap](javascript:document.title='pwned')

```python
if a < b and "<b>" != '&':
    print("ok")
```

<img src=x onerror="document.title='pwned'"> <script>document.title='pwned'</script>"""
HTML_ANSWER = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script><b>bold</b>'
SLOW_DELTA_S = 0.15
SLOW_MIN_S = 4.0
FAULT_AFTER = 2


WIDE_ANSWER = "```\n" + "x = [" + ", ".join(["1234567"] * 33) + "]\n```\n\n" + "W" * 200
PROMPT_LOG_ENV = "GEMMA_CHAT_TEST_PROMPT_LOG"


def inject(engine):
    return FaultyEngine(engine)


class FaultyEngine:
    def __init__(self, engine):
        self.engine = engine
        self.numbered = itertools.count(1)
        self.prompt_log = os.environ.get(PROMPT_LOG_ENV)

    def __getattr__(self, name):  # tiers(), close(), ...: the real engine's
        return getattr(self.engine, name)

    def generate(self, tier, messages, *, stop=None, sampling=None):
        text = messages[-1]["content"]
        if self.prompt_log:
            with open(self.prompt_log, "a", encoding="utf-8") as log:
                log.write(json.dumps({"tier": tier, "messages": messages}) + "\n")
        if "[fault:numbered]" in text:
            return self._canned(tier, f"Answer number {next(self.numbered)}.")
        if "[fault:wide]" in text:
            return self._canned(tier, WIDE_ANSWER)
        if "[fault:html]" in text:
            return self._canned(tier, HTML_ANSWER)
        if "[fault:markdown]" in text:
            return self._canned(tier, MARKDOWN_ANSWER)
        stream = self.engine.generate(tier, messages, stop=stop, sampling=sampling)
        if "[fault:raise]" in text:
            return self._raise_mid_stream(stream)
        if "[fault:slow]" in text:
            return self._slow(stream)
        return stream

    @staticmethod
    def _raise_mid_stream(stream):
        deltas = 0
        try:
            for item in stream:
                yield item
                deltas += isinstance(item, str)
                if deltas == FAULT_AFTER:
                    raise RuntimeError("injected fault: the model crashed in the middle of the stream")
        finally:
            stream.close()

    @staticmethod
    def _slow(stream):
        started = time.monotonic()
        try:
            for item in stream:
                if isinstance(item, GenerationResult):
                    time.sleep(max(0.0, SLOW_MIN_S - (time.monotonic() - started)))
                elif isinstance(item, str):
                    time.sleep(SLOW_DELTA_S)
                yield item
        finally:
            stream.close()

    def _canned(self, tier, answer):
        label = next(status.label for status in self.engine.tiers() if status.tier == tier)
        for part in (answer[:20], answer[20:]):
            yield part
        yield GenerationResult(
            text=answer, prompt_tokens=1, completion_tokens=2, finish_reason="stop",
            ttft_ms=1, duration_ms=2, model_label=label,
        )
