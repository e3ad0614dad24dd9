"""The HTTP server: uvicorn in a thread, with limits a client cannot sit on.

- a connection must send a whole request head within HEADER_TIMEOUT_S of connecting (or of its
  previous response): a half-open or trickling connection is closed;
- an idle keep-alive connection is closed after KEEP_ALIVE_S;
- a request head is at most MAX_HEAD_BYTES;
- at most MAX_CONNECTIONS connections and tasks at once, beyond that 503.
"""

from __future__ import annotations

import threading
import time

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
MAX_HEAD_BYTES = 32 * 1024
MAX_CONNECTIONS = 512


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_cycle = None
        self._head_timer = None
        self._start_head_timer()

    def _start_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_cycle = self.cycle
        self._head_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if getattr(self, "_head_timer", None) is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is self._head_cycle and not self.transport.is_closing():
            self.transport.close()  # no new request head arrived in time

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and self.cycle is not self._head_cycle:
            self._cancel_head_timer()  # a whole request head arrived

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._start_head_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)


class RunningServer:
    def __init__(self, server: uvicorn.Server, thread: threading.Thread):
        self.server = server
        self.thread = thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(app, *, host: str, port: int) -> RunningServer:
    """Serve `app` on host:port from a background thread; returns once it listens (OSError if it cannot)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=TimedH11Protocol,
        ws="none",
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=3,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        limit_concurrency=MAX_CONNECTIONS,
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # the main thread handles Ctrl-C and SIGTERM
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # noqa: BLE001 — reported to the starting thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="http-server", daemon=True)
    thread.start()
    while not server.started:
        if failure or not thread.is_alive():
            error = failure[0] if failure else None
            if isinstance(error, OSError):
                raise error
            raise OSError(f"the server did not start{f': {error}' if error else ''}")
        time.sleep(0.05)
    return RunningServer(server, thread)
