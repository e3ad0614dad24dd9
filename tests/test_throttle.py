"""The in-memory rate limiter behind the sign-in and registration limits."""

from gemma_chat.throttle import RateLimiter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_key_gets_its_limit_per_window_then_waits():
    clock = Clock()
    limiter = RateLimiter(3, 60, clock=clock)
    assert [limiter.hit("a") for _ in range(3)] == [0, 0, 0]
    wait = limiter.hit("a")
    assert 1 <= wait <= 61
    assert limiter.hit("b") == 0  # another client is not affected
    clock.now += 61
    assert limiter.hit("a") == 0


def test_retry_after_counts_nothing_and_zero_means_closed():
    limiter = RateLimiter(1, 60, clock=Clock())
    assert limiter.retry_after("a") == 0 and limiter.retry_after("a") == 0
    assert limiter.hit("a") == 0 and limiter.retry_after("a") > 0
    assert RateLimiter(0, 60).hit("a") > 0


def test_memory_is_bounded():
    limiter = RateLimiter(1, 60, max_keys=100, clock=Clock())
    for n in range(1000):
        limiter.hit(f"client{n}")
    assert len(limiter._events) == 100
