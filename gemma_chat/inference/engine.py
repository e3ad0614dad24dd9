"""The model tiers the app serves: one backend per tier, started from the settings and the memory plan.

A local tier runs in a supervised worker process (backends/local.py), a remote one on an
OpenAI-compatible server (backends/openai.py); a tier that cannot run says why. Nothing native
runs in the app's own process, so no model failure can take the app down.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from typing import Callable, Iterator, Sequence

from ..backends.base import Backend, GenerationResult, Message, Sampling, TierStatus, Waiting  # noqa: F401 — the engine's vocabulary
from ..backends.cpu_features import ExtraBuffers, decide_extra_buffers
from ..config import Settings
from ..ops.error_log import log_error
from ..errors import ModelUnavailableError
from .model_files import ModelStatus, describe_models, model_path_of

LOAD_TIMEOUT_S = 600.0  # the 12B takes a while from a cold disk; the app starts anyway after this


class UnavailableBackend:
    """A tier the memory plan or the files rule out: it only says why."""

    def __init__(self, settings: Settings, status: ModelStatus):
        tier = settings.tier(status.tier)
        self._status = TierStatus(
            tier=status.tier, label=status.model, price=tier.price, available=False, reason=status.reason,
            is_demo=status.is_demo, max_tokens=tier.max_tokens, n_ctx=status.n_ctx, state=status.status,
        )

    def status(self) -> TierStatus:
        return self._status

    def wait_until_loaded(self, timeout: float) -> None:
        pass

    def generate(self, messages, *, stop=None, sampling=None):
        raise ModelUnavailableError(
            "The {label} model is not available: {reason}", label=self._status.label, reason=self._status.reason
        )
        yield  # a generator, like every backend's

    def restart(self) -> None:
        pass

    def close(self) -> None:
        pass


def _record_crash(location: str, exc: BaseException, detail: str) -> None:
    log_error(location, exc, detail=detail)


class Engine:
    """The tiers' backends. `Engine.start` returns while local models load; `Engine.load` waits."""

    def __init__(
        self, settings: Settings, backends: dict[str, Backend], extra_buffers: ExtraBuffers | None,
        log: Callable[[str], None] = print,
    ):
        self.settings = settings
        self._backends = backends
        self._extra_buffers = extra_buffers
        self._log = log

    @classmethod
    def start(cls, settings: Settings, *, log: Callable[[str], None] = print) -> Engine:
        """Plan from file headers and free RAM, then start each tier's backend (mini first)."""
        statuses = describe_models(settings)
        local = [s for s in statuses if settings.tier(s.tier).backend == "local" and s.loadable]
        extra_buffers = decide_extra_buffers(settings) if local else None
        if extra_buffers is not None:
            log(extra_buffers.summary)
        backends: dict[str, Backend] = {}
        for status in statuses:
            tier = settings.tier(status.tier)
            if tier.backend == "openai":
                from ..backends.openai import OpenAIBackend

                backends[status.tier] = OpenAIBackend(settings, tier, log=log)
            elif status.loadable:
                from ..backends.local import LocalWorkerBackend

                backends[status.tier] = LocalWorkerBackend(
                    settings, tier, status, extra_buffers, model_path=functools.partial(model_path_of, settings, status),
                    log=log, record_crash=_record_crash,
                )
            else:
                log(f"{status.tier}: {status.model} unavailable ({status.status}) — {status.reason}")
                backends[status.tier] = UnavailableBackend(settings, status)
        return cls(settings, backends, extra_buffers, log)

    @classmethod
    def load(cls, settings: Settings, *, log: Callable[[str], None] = print) -> Engine:
        engine = cls.start(settings, log=log)
        engine.wait_until_loaded()
        return engine

    def wait_until_loaded(self, timeout: float = LOAD_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        for backend in self._backends.values():
            backend.wait_until_loaded(max(0.0, deadline - time.monotonic()))
        if self._extra_buffers is not None and self._extra_buffers.probe:  # the plan learnt something
            self._log(self.extra_buffers.summary)
            self._extra_buffers = self.extra_buffers

    @property
    def extra_buffers(self) -> ExtraBuffers | None:
        """What the local workers use now (a probe may have changed it since start)."""
        for backend in self._backends.values():
            if hasattr(backend, "extra_buffers"):
                return backend.extra_buffers
        return self._extra_buffers

    def backend(self, tier: str) -> Backend:
        self.settings.tier(tier)  # ConfigError for an unknown name
        return self._backends[tier]

    def tiers(self) -> list[TierStatus]:
        return [backend.status() for backend in self._backends.values()]

    def load_report(self) -> list[dict]:
        """Each tier's load and readiness now, for /metrics and /readyz."""
        report = []
        for name, backend in self._backends.items():
            status = backend.status()
            ready = status.available and status.state not in ("loading", "restarting")
            report.append({"tier": name, "ready": ready, **dataclasses.asdict(backend.load())})
        return report

    def is_available(self, tier: str) -> bool:
        backend = self._backends.get(tier)
        return backend is not None and backend.status().available

    def generate(
        self, tier: str, messages: Sequence[Message], *, stop: threading.Event | None = None,
        sampling: Sampling | None = None,
    ) -> Iterator[Waiting | str | GenerationResult]:
        """Stream one reply: Waiting(position)…, then text deltas, then one GenerationResult.

        ModelUnavailableError and QueueFullError are raised on the first `next()`; ContextTooLongError
        before any text. A local tier runs up to `slots` generations at once (continuous batching in
        its worker); beyond them, callers wait with their position. A history past the context loses
        older turns in big steps (about half the budget at once, so later turns reuse the cached
        prefix); only a newest message too long on its own is refused. Setting `stop` ends the stream promptly with finish_reason "stopped". Closing
        the generator early frees the tier. A crashed worker raises WorkerCrashedError. `sampling`
        overrides the tier's temperature / top_p for this request only (the /v1 API's).
        """
        return self.backend(tier).generate(messages, stop=stop, sampling=sampling)

    def restart_tier(self, tier: str) -> None:
        """An administrator brings a crashed or failed tier back."""
        self.backend(tier).restart()

    def close(self) -> None:
        """Stop running generations, refuse new ones, and stop every worker."""
        for backend in self._backends.values():
            backend.close()
