"""The HTTP server: uvicorn in a thread, with limits a client cannot sit on.

httptools and uvloop (uvicorn's own "standard" choice) when installed: a request the edge turns
away costs a third of the CPU it costs on h11 and asyncio's loop, which is what a flood is made of.

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

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: h11, pure Python, does the same job slower
    HttpToolsProtocol = None

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
MAX_HEAD_BYTES = 32 * 1024
MAX_CONNECTIONS = 512


class HeadDeadline:
    """For a uvicorn HTTP protocol: each request head must arrive whole within HEADER_TIMEOUT_S of
    the connection (or of the previous response)."""

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


class TimedH11Protocol(HeadDeadline, H11Protocol):
    """h11 limits the head's size itself (h11_max_incomplete_event_size)."""


class HeadTooLargeError(ValueError):
    pass


if HttpToolsProtocol is not None:

    class TimedHttpToolsProtocol(HeadDeadline, HttpToolsProtocol):
        """httptools has no limit on a head's size: the URL and headers are counted as they are parsed.
        The error raised from the parser's callback is a parse error to uvicorn: 400, connection closed."""

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0

        def _count_head(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > MAX_HEAD_BYTES:
                raise HeadTooLargeError("request head too large")

        def on_url(self, url: bytes) -> None:
            self._count_head(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
            super().on_header(name, value)

else:
    TimedHttpToolsProtocol = None


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
        http=TimedHttpToolsProtocol or TimedH11Protocol,
        loop="auto",  # uvloop when installed
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
