"""What an operator scrapes at /metrics: one Prometheus registry, counted in the app process.

The model workers are other processes, but every turn, charge and refusal passes through this one
(the chat turn, the ledger, the edge), so counting here is multi-process correct without
prometheus_client's multiprocess mode. Gauges that describe the present (queue, slots, holds) are
read when scraped. Low in the layers, like error_log: anything may count, nothing here imports back.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

registry = CollectorRegistry(auto_describe=True)

turns = Counter("gemma_chat_requests", "Chat turns (UI and /v1) by tier and outcome", ["tier", "outcome"], registry=registry)
tokens_generated = Counter("gemma_chat_tokens_generated", "Tokens the models generated", ["tier"], registry=registry)
time_to_first_token = Histogram(
    "gemma_chat_time_to_first_token_seconds", "From the turn's start to its first token", ["tier"], registry=registry,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
tokens_per_second = Histogram(
    "gemma_chat_tokens_per_second", "Decode speed of one answer, after its first token", ["tier"], registry=registry,
    buckets=(1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 250),
)
credits_charged = Counter("gemma_chat_credits_charged", "Credits captured for answers", registry=registry)
credits_topped_up = Counter("gemma_chat_credits_topped_up", "Credits users added themselves", registry=registry)
signin_refusals = Counter("gemma_chat_signin_refusals", "Sign-ins and registrations refused", ["reason"], registry=registry)
api_requests = Counter("gemma_chat_v1_requests", "/v1 requests by HTTP status", ["status"], registry=registry)


def record_turn(tier: str, outcome: str, *, charged: int = 0, completion_tokens: int | None = None,
                ttft_ms: int | None = None, duration_ms: int | None = None) -> None:
    """One finished turn: its outcome (ok, stopped, error, busy, refused, rejected) and its figures."""
    turns.labels(tier, outcome).inc()
    if charged:
        credits_charged.inc(charged)
    if completion_tokens:
        tokens_generated.labels(tier).inc(completion_tokens)
    if ttft_ms is not None:
        time_to_first_token.labels(tier).observe(ttft_ms / 1000)
    if completion_tokens and completion_tokens > 1 and ttft_ms is not None and duration_ms and duration_ms > ttft_ms:
        tokens_per_second.labels(tier).observe((completion_tokens - 1) / ((duration_ms - ttft_ms) / 1000))


class PresentState:
    """Gauges read at scrape time from callbacks the web layer hands over (the engine, the store)."""

    def __init__(self, tiers: Callable[[], Iterable[dict]], holds: Callable[[], tuple[int, int]]):
        self._tiers, self._holds = tiers, holds

    def collect(self):
        queue = GaugeMetricFamily("gemma_chat_queue_length", "Turns waiting for a tier", labels=["tier"])
        busy = GaugeMetricFamily("gemma_chat_slots_busy", "Generations running on a tier", labels=["tier"])
        slots = GaugeMetricFamily("gemma_chat_slots", "Generations a tier runs at once", labels=["tier"])
        ready = GaugeMetricFamily("gemma_chat_tier_ready", "1 when the tier answers", labels=["tier"])
        restarts = GaugeMetricFamily("gemma_chat_worker_restarts", "Worker restarts since the app started", labels=["tier"])
        for tier in self._tiers():
            queue.add_metric([tier["tier"]], tier["waiting"])
            busy.add_metric([tier["tier"]], tier["running"])
            slots.add_metric([tier["tier"]], tier["slots"])
            ready.add_metric([tier["tier"]], 1 if tier["ready"] else 0)
            restarts.add_metric([tier["tier"]], tier["restarts"])
        count, credits = self._holds()
        holds = GaugeMetricFamily("gemma_chat_holds_open", "Credit holds of answers in flight", value=count)
        held = GaugeMetricFamily("gemma_chat_credits_held", "Credits reserved by open holds", value=credits)
        return [queue, busy, slots, ready, restarts, holds, held]


_present: PresentState | None = None


def watch_present_state(state: PresentState) -> None:
    """The app's engine and store, read at each scrape; a new app (tests start several) replaces the last."""
    global _present
    if _present is not None:
        registry.unregister(_present)
    _present = state
    registry.register(state)


def exposition() -> bytes:
    return generate_latest(registry)
