"""The HTTP server: uvicorn in a thread, with limits a client cannot sit on.

httptools and uvloop (uvicorn's own "standard" choice) when installed: a request the edge turns
away costs a third of the CPU it costs on h11 and asyncio's loop, which is what a flood is made of.

- a connection must send a whole request head within HEADER_TIMEOUT_S of connecting (or of its
  previous response), and then the whole body within `body_timeout_s`: a half-open or trickling
  connection is closed;
- an idle keep-alive connection is closed after KEEP_ALIVE_S;
- a request head is at most MAX_HEAD_BYTES;
- one client address holds at most `connections_per_address` connections (a trusted proxy is not
  counted: it carries everyone), so one address cannot take the MAX_CONNECTIONS that everyone shares;
- at most MAX_CONNECTIONS connections and tasks at once, beyond that 503.

X-Forwarded-* headers are never read here: web/app.py decides (uvicorn's proxy_headers is off).
"""

from __future__ import annotations

import collections
import threading
import time

import uvicorn
from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: h11, pure Python, does the same job slower
    HttpToolsProtocol = None

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
MAX_HEAD_BYTES = 32 * 1024
MAX_CONNECTIONS = 512
BODY_TIMEOUT_S = 30.0  # the default; start_server takes the setting
_TOO_MANY_BODY = b"Too many connections from your address; retry."
TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
    b"connection: close\r\nretry-after: 5\r\n\r\n%s" % (len(_TOO_MANY_BODY), _TOO_MANY_BODY)
)


class AddressCap:
    """For a uvicorn HTTP protocol: at most `per_address` open connections from one peer address.

    The class attributes are set per server by start_server (protocol_class); every connection of
    a server runs on its one event loop, so the counter needs no lock. A refused connection gets a
    short 503 and is closed before uvicorn counts it or parses a byte.
    """

    open_by_address: collections.Counter = collections.Counter()
    per_address: int = 64
    exempt: _TrustedHosts | None = None  # trusted proxies

    def connection_made(self, transport) -> None:
        peer = transport.get_extra_info("peername")
        self._address = peer[0] if isinstance(peer, (tuple, list)) and peer else None
        self._refused = False
        counted = self._address is not None and not (self.exempt is not None and self._address in self.exempt)
        if counted and self.open_by_address[self._address] >= self.per_address:
            self._refused = True
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            return
        if counted:
            self.open_by_address[self._address] += 1
        else:
            self._address = None
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def connection_lost(self, exc) -> None:
        if self._refused:
            return
        if self._address is not None:
            self.open_by_address[self._address] -= 1
            if self.open_by_address[self._address] <= 0:
                del self.open_by_address[self._address]
        super().connection_lost(exc)


class HeadDeadline:
    """For a uvicorn HTTP protocol: each request head must arrive whole within HEADER_TIMEOUT_S of
    the connection (or of the previous response), and its body within body_timeout_s of the head."""

    body_timeout_s: float = BODY_TIMEOUT_S

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_cycle = None
        self._head_timer = None
        self._body_timer = None
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
        cycle = self.cycle
        if cycle is not None and cycle is not self._head_cycle and self._head_timer is not None:
            self._cancel_head_timer()  # a whole request head arrived: now its body has a deadline
            if cycle.more_body:
                self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_timed_out, cycle)
        if self._body_timer is not None and (cycle is None or not cycle.more_body):
            self._cancel_body_timer()  # the whole body arrived

    def _cancel_body_timer(self) -> None:
        if getattr(self, "_body_timer", None) is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self, cycle) -> None:
        self._body_timer = None
        if self.cycle is cycle and cycle.more_body and not cycle.response_complete and not self.transport.is_closing():
            self.transport.close()  # the body is being trickled: the app reads a disconnect

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._start_head_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
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


def protocol_class(*, connections_per_address: int, body_timeout_s: float, trusted_proxies: str | None):
    """The HTTP protocol with this server's own limits and its own per-address counter."""
    base = TimedHttpToolsProtocol or TimedH11Protocol
    limits = {
        "open_by_address": collections.Counter(),
        "per_address": connections_per_address,
        "exempt": _TrustedHosts(trusted_proxies) if trusted_proxies else None,
        "body_timeout_s": body_timeout_s,
    }
    return type("EdgeHttpProtocol", (AddressCap, base), limits)


def start_server(
    app, *, host: str, port: int, connections_per_address: int = 64, body_timeout_s: float = BODY_TIMEOUT_S,
    trusted_proxies: str | None = None,
) -> RunningServer:
    """Serve `app` on host:port from a background thread; returns once it listens (OSError if it cannot).

    `trusted_proxies` (uvicorn's forwarded_allow_ips format) are exempt from the per-address cap.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class(
            connections_per_address=connections_per_address, body_timeout_s=body_timeout_s, trusted_proxies=trusted_proxies
        ),
        proxy_headers=False,  # uvicorn's default (True) believed X-Forwarded-For from 127.0.0.1: web/app.py decides
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
