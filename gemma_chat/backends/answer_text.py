"""One answer's text as its tokens arrive: UTF-8 pieces in, streamable deltas out, stop strings cut.

Pure Python, no llama_cpp: the decode loop (backends/batch_loop.py) feeds each sampled token's
bytes and streams what `add` returns.
"""

from __future__ import annotations

import codecs
from typing import Sequence

from .base import stop_prefix_length


class AnswerText:
    """Leading blanks are skipped (answers start after "A:" with a space); a tail that may begin a
    stop string, and trailing whitespace, wait for the next piece."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self._emitted = 0
        self._started = False  # until the first delta, leading blanks are skipped, not streamed
        self.stopped = False  # a stop string ended the answer

    def add(self, piece: bytes) -> str:
        """The new streamable text after `piece` ("" if none); sets `stopped` at a stop string."""
        self.text += self._decoder.decode(piece)
        cut = _find_stop(self.text, self.stops)
        if cut is not None:
            self.text, self.stopped = self.text[:cut], True
            return ""
        if not self._started:
            self._emitted = len(self.text) - len(self.text.lstrip())
        safe = _safe_end(self.text, self.stops)
        if safe <= self._emitted:
            return ""
        delta, self._emitted, self._started = self.text[self._emitted:safe], safe, True
        return delta

    def finish(self) -> tuple[str, str]:
        """(the last delta, the whole answer): the held-back tail, without trailing whitespace.

        Bytes of a character cut off by the end are dropped, not shown as "\\ufffd"."""
        text = self.text.rstrip()
        if not self._started:
            self._emitted = len(text) - len(text.lstrip())
        last = text[self._emitted:] if len(text) > self._emitted else ""
        return last, text.lstrip()


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [text.find(s) for s in stops if s in text]
    return min(found) if found else None


def _safe_end(text: str, stops: Sequence[str]) -> int:
    """How much of `text` can be streamed: hold back a tail that may begin a stop string,
    and trailing whitespace, which is dropped if the answer ends there."""
    return min(len(text.rstrip()), len(text) - stop_prefix_length(text, stops))
