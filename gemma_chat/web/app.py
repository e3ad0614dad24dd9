"""The web app: FastAPI with the Gradio UI mounted at /, the /auth routes, the edge, and the server.

Signing in runs here, not in Gradio's queue: /auth/login and /auth/register check the per-client
rate limits, then take a slot on a small sign-in lane (a few threads for bcrypt, a short waiting
line, 429 beyond it), so a flood of anonymous sign-ins never reaches the queue that signed-in
users' chats, top-ups and history go through. A successful sign-in sets the session cookie
`gemma_session` (HttpOnly, SameSite=Strict, Path=/, Secure over https).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import os
import sys
import threading
from dataclasses import dataclass

from ..ops import metrics
from ..config import Settings
from ..ops.error_log import log_error
from ..errors import SOMETHING_WENT_WRONG, GemmaChatError, ThrottledError, UsernameTakenError
from ..throttle import RateLimiter
from .api import create_api_router
from .edge import TOO_MANY_SIGN_INS, Edge, client_address
from .hosts import HostNames
from .operations import CountApiResponses, create_operations_router

# Set before gradio is imported anywhere: an offline desktop app does not phone home.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse, Response  # noqa: E402
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware  # noqa: E402

from ..accounts import auth, sessions  # noqa: E402
from ..billing import statement  # noqa: E402
from ..store.db import utcnow  # noqa: E402
from ..ui import PAGE_JS, ChatApp, use_served_route_app  # noqa: E402
from ..ui.text import language_of, translated  # noqa: E402
from ..wording import Message  # noqa: E402

SESSION_COOKIE = sessions.SESSION_COOKIE
MAX_CREDENTIALS_BODY = 4096
SIGNIN_WAITING_PER_WORKER = 2  # sign-ins that may wait for a bcrypt thread, per thread
SIGNIN_NICE = 10  # the bcrypt threads' CPU priority below the event loop's (Linux: per thread)


def lower_thread_priority() -> None:
    """Anonymous bcrypt yields the CPU to signed-in users' events when the cores are busy.

    Linux gives each thread its own nice value; elsewhere setpriority would name the whole process
    (or nothing), so the lane keeps the normal priority there.
    """
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SIGNIN_NICE)
        except OSError:
            pass  # a sandbox that forbids it: slower under a flood, still correct


class SignInLane:
    """A few threads for bcrypt and a short line in front of them; beyond it, "try again"."""

    def __init__(self, workers: int):
        self.executor = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="signin", initializer=lower_thread_priority
        )
        self.places = threading.BoundedSemaphore(workers * (1 + SIGNIN_WAITING_PER_WORKER))

    async def run(self, function, *args):
        if not self.places.acquire(blocking=False):
            raise ThrottledError("Too many sign-ins right now; try again in 5 s.", retry_after=5)
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)
        finally:
            self.places.release()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def login_with_session(settings: Settings, username, password, client: str) -> str:
    """Check the credentials (auth.login's throttles first) and start a session: its cookie token."""
    user = auth.login(settings, username, password, client=client)
    return sessions.create_session(settings, user.id)


def register_with_session(settings: Settings, username, password) -> str:
    user = auth.register_user(settings, username, password)
    return sessions.create_session(settings, user.id)


@dataclass
class WebApp:
    fastapi: FastAPI
    demo: gr.Blocks
    chat: ChatApp
    lane: SignInLane


# The queue holds what this many accounts at their events_per_user cap ask at once: the cap, not
# the queue's size, is what keeps one account from crowding out the others.
QUEUE_ACCOUNTS_AT_CAP = 32


def session_cookie_of(request: Request) -> str | None:
    """The request's one session token (the edge refuses two): the parser every handler uses."""
    return sessions.session_token(request.headers.get("cookie"))


def create_app(settings: Settings, engine, *, host: str = "127.0.0.1") -> WebApp:
    """`host` is what the server listens on (--host): a name the app answers to (web/hosts.py)."""
    chat = ChatApp(settings, engine)
    demo = chat.build()
    queue = demo._queue  # Gradio internals, read-only but for max_size: tests/reliability/test_edge.py notices a change
    queue.max_size = max(queue.max_size or 0, settings.events_per_user * QUEUE_ACCOUNTS_AT_CAP)
    lane = SignInLane(settings.signin_concurrency)
    per_client = RateLimiter(settings.signin_attempts_per_minute, 60)
    registrations = RateLimiter(settings.registrations_per_hour, 3600)
    api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    async def credentials(request: Request, route: str) -> tuple[object, object]:
        body = await request.body()
        if len(body) > MAX_CREDENTIALS_BODY:
            if route == "login":
                raise GemmaChatError(auth.WRONG_CREDENTIALS)
            raise GemmaChatError("The username or password is far too long.")
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise GemmaChatError("Enter a username.")
        return data.get("username"), data.get("password")

    def refused(request: Request, exc: GemmaChatError) -> JSONResponse:
        """The sign-in form shows `message`, in the language the browser asks for."""
        message = translated(language_of(request), exc)
        metrics.signin_refusals.labels("throttled" if isinstance(exc, ThrottledError) else "refused").inc()
        if isinstance(exc, ThrottledError):
            return JSONResponse(
                {"ok": False, "message": message}, status_code=429, headers={"Retry-After": str(exc.retry_after)}
            )
        return JSONResponse({"ok": False, "message": message}, status_code=400)

    def signed_in(request: Request, token: str) -> JSONResponse:
        old = session_cookie_of(request)
        if old:
            sessions.revoke_session(old)  # one session per browser: signing in again ends the last one
        response = JSONResponse({"ok": True, "message": ""})
        response.set_cookie(
            SESSION_COOKIE, token, max_age=settings.session_max_age_s, path="/", httponly=True, samesite="strict",
            secure=request.scope.get("scheme") == "https",  # behind a trusted proxy, its X-Forwarded-Proto
        )
        return response

    def client_of(request: Request) -> str:
        return client_address(request.scope)

    async def guarded(location: str, function, *args):
        try:
            return await lane.run(function, *args)
        except GemmaChatError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise GemmaChatError(SOMETHING_WENT_WRONG, error_id=log_error(f"web:{location}", exc)) from exc

    @api.post("/auth/login")
    async def login_route(request: Request):
        client = client_of(request)
        try:
            username, password = await credentials(request, "login")
            if wait := per_client.hit(client):
                raise ThrottledError(TOO_MANY_SIGN_INS, retry_after=wait, seconds=wait)
            token = await guarded("login", login_with_session, settings, username, password, client)
        except GemmaChatError as exc:
            return refused(request, exc)
        return signed_in(request, token)

    @api.post("/auth/register")
    async def register_route(request: Request):
        client = client_of(request)
        try:
            username, password = await credentials(request, "register")
            if not settings.allow_registration or settings.registrations_per_hour == 0:
                raise GemmaChatError("Registration is closed; ask an administrator for an account.")
            if wait := registrations.retry_after(client):
                minutes = -(-wait // 60)
                raise ThrottledError(
                    "Too many new accounts from your address; try again in {minutes} {minutes:minute|minutes}.",
                    retry_after=wait, minutes=minutes,
                )
            if wait := per_client.hit(client):
                raise ThrottledError(TOO_MANY_SIGN_INS, retry_after=wait, seconds=wait)
            try:
                token = await guarded("register", register_with_session, settings, username, password)
            except UsernameTakenError:
                # "taken" says an account exists: it costs the address as much as an account does,
                # so one address learns at most registrations_per_hour names an hour.
                registrations.hit(client)
                raise
            registrations.hit(client)
        except GemmaChatError as exc:
            return refused(request, exc)
        return signed_in(request, token)

    def signed_out() -> JSONResponse:
        response = JSONResponse({"ok": True, "message": ""})
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @api.post("/auth/logout")
    async def logout_route(request: Request):
        token = session_cookie_of(request)
        if token:
            await asyncio.to_thread(sessions.revoke_session, token)
        return signed_out()

    @api.post("/auth/logout-all")
    async def logout_everywhere_route(request: Request):
        token = session_cookie_of(request)
        found = await asyncio.to_thread(sessions.resolve_session, settings, token, touch=False) if token else None
        if found is not None:
            await asyncio.to_thread(sessions.revoke_user_sessions, found.user.id)
        return signed_out()

    @api.get("/statement.csv")
    def statement_csv(request: Request):
        """The signed-in user's own statement (the Top up tab's link); a sync route: FastAPI runs it in a thread."""
        token = session_cookie_of(request)
        found = sessions.resolve_session(settings, token) if token else None
        if found is None:
            return PlainTextResponse(translated(language_of(request), Message("Please log in.")), status_code=401)
        out = io.StringIO()
        statement.write_statement_csv(found.user.id, out)
        name = f"gemma-chat-statement-{found.user.username}-{utcnow():%Y-%m-%d}.csv"
        return Response(
            out.getvalue(), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
        )

    api.include_router(create_api_router(settings, engine))  # before the UI, which is mounted at /
    api.include_router(create_operations_router(settings, engine))
    api = gr.mount_gradio_app(
        api,
        demo,
        path="/",
        show_error=False,  # unexpected errors show their id, never their internals
        max_file_size="1kb",  # no file inputs; the edge refuses /upload before this
        enable_monitoring=False,
        i18n=chat.i18n,
        footer_links=[],
        run_history=False,  # it would keep event inputs in the browser's localStorage
        js=PAGE_JS,
    )
    use_served_route_app(demo, next(r.app for r in api.routes if isinstance(getattr(r, "app", None), gr.routes.App)))
    api.add_middleware(
        Edge,
        settings=settings,
        live_user=lambda token: sessions.live_session_user(settings, token),
        signin_retry_after=per_client.retry_after,
        queued_sessions=lambda: [event.session_hash for event in list(queue.event_ids_to_events.values())],
        host_names=HostNames.for_server(host, settings.allowed_hosts),
    )
    api.add_middleware(CountApiResponses)  # outside the edge: /v1 answers the edge refuses count too
    if settings.trust_proxy_headers:
        # Outside the edge, so the edge and the routes see the client's address and scheme; only from
        # the proxies in forwarded_allow_ips (uvicorn's own check of the peer, nearest proxy last).
        api.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    return WebApp(api, demo, chat, lane)
