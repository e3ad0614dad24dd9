"""In-memory rate limits for anonymous work (sign-in, registration), kept per client address.

A sliding window per key: at most `limit` events in `window_s`; beyond it the caller is told how
long to wait. In memory on purpose: these limits guard the CPU of one running app; the lock-outs
that must outlive a restart (and that `users unlock` ends) are in the database (accounts/auth.py).
"""

from __future__ import annotations

import collections
import threading
import time


class RateLimiter:
    """At most `limit` events per `window_s` for each key; memory bounded by `max_keys`."""

    def __init__(self, limit: int, window_s: float, *, max_keys: int = 100_000, clock=time.monotonic):
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._events: collections.OrderedDict[str, collections.deque] = collections.OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> int:
        """Seconds until `key` may act again; 0 when it may act now (nothing is counted)."""
        with self._lock:
            events = self._recent(key)
            if events is None or len(events) < self.limit:
                return 0
            return max(1, int(events[0] + self.window_s - self._clock()) + 1)

    def hit(self, key: str) -> int:
        """Count one event for `key` unless it is over its limit; returns retry_after (0: counted)."""
        if self.limit <= 0:
            return max(1, int(self.window_s))
        with self._lock:
            now = self._clock()
            events = self._recent(key)
            if events is None:
                events = self._events[key] = collections.deque()
                while len(self._events) > self.max_keys:
                    self._events.popitem(last=False)  # the longest-quiet key goes first
            if len(events) >= self.limit:
                return max(1, int(events[0] + self.window_s - now) + 1)
            events.append(now)
            self._events.move_to_end(key)
            return 0

    def _recent(self, key: str):
        events = self._events.get(key)
        if events is None:
            return None
        cutoff = self._clock() - self.window_s
        while events and events[0] <= cutoff:
            events.popleft()
        return events
