"""`python main.py`: open the data dir, recover from a crash, load the models, launch the UI."""

from __future__ import annotations

import fcntl
import importlib
import ipaddress
import logging
import os
import signal
import threading

from .config import Settings
from .ops.error_log import announce
from .store.db import close_database
from .errors import GemmaChatError
from .ops.instances import start_instance, stop_instance
from .ops.startup import OrphanSweeper, open_data_dir, recover_after_crash


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _lock_data_dir(settings: Settings):
    """One running app per SQLite data dir: start-up releases every hold, so a second one must not start.

    On PostgreSQL several instances share the database; each owns its holds (ops/instances.py).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.database_url:
        return None
    lock_file = open(settings.data_dir / "app.lock", "w")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock_file.close()
        raise GemmaChatError(f"Another gemma-chat is already running on {settings.data_dir}.") from None
    return lock_file


# Tests only (tests/reliability/faults.py): "module:function" that wraps the loaded engine to inject
# model faults into a real running app. Unset in normal use; the app says loudly when it is set.
FAULT_INJECTION_ENV = "GEMMA_CHAT_FAULT_INJECTION"


def _with_injected_faults(engine):
    hook = os.environ.get(FAULT_INJECTION_ENV, "")
    if not hook:
        return engine
    module, _, function = hook.partition(":")
    announce("warning", f"warning: {FAULT_INJECTION_ENV}={hook}: model faults are injected (a test hook)", level=logging.WARNING)
    return getattr(importlib.import_module(module), function)(engine)


def serve_app(settings: Settings, *, host: str, port: int, open_browser: bool) -> int:
    lock = _lock_data_dir(settings)
    open_data_dir(settings)
    instance_id = start_instance(settings.database_url)  # before any hold: they are stamped with it
    recovery = recover_after_crash(settings, all_holds=True)
    if recovery.released_holds:
        announce("recovered", f"Recovered from an earlier crash: released {recovery.released_holds} holds uncharged.")
    sweeper = None
    if settings.database_url:
        announce("database", f"Database: {settings.database_label} (this instance: {instance_id[:8]})")
        sweeper = OrphanSweeper(settings).start()

    from .inference.engine import Engine

    # The workers load the models while this process imports gradio and builds the UI (most of the
    # start-up time); the server listens once the models are ready.
    engine = Engine.start(settings, log=lambda line: announce("models", line))
    from .web.app import create_app
    from .web.server import start_server

    engine = _with_injected_faults(engine)
    web = create_app(settings, engine, host=host)  # the UI reads the tiers' states per page load, not here
    engine.wait_until_loaded()
    if not any(status.available for status in engine.tiers()):
        announce("warning", "warning: no model is available; the app starts so you can sign in and read history.", level=logging.WARNING)
    if not _is_loopback(host):
        announce("warning", f"warning: listening on {host}, not only this computer: anyone on the network can reach the app.", level=logging.WARNING)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    server = None
    try:
        try:
            server = start_server(
                web.fastapi, host=host, port=port, connections_per_address=settings.connections_per_address,
                body_timeout_s=settings.request_body_timeout_s,
                trusted_proxies=settings.forwarded_allow_ips if settings.trust_proxy_headers else None,
            )
        except OSError as exc:
            raise GemmaChatError(f"Cannot listen on {host}:{port} ({exc}); is the port in use? Try --port.") from None
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
        announce("listening", f"gemma-chat is running at {url} (Ctrl-C to stop)")
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        announce("stopping", "Shutting down…")
        if server is not None:
            server.stop()
        web.lane.close()
        engine.close()
        if sweeper is not None:
            sweeper.stop()
        stop_instance()
        close_database()
        if lock is not None:
            lock.close()
    return 0
