"""/healthz, /readyz and /metrics: what load balancers and Prometheus ask, without a session.

/healthz: the process answers (200). /readyz: 200 when the database answers and a tier is ready,
else 503, with what was checked. /metrics (setting `metrics`, off by default): Prometheus' text
format, only to a loopback client or with an administrator's API key; otherwise 404, as if absent.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..accounts import keys
from ..billing import ledger
from ..ops import metrics
from ..config import Settings
from ..ops.health import check_readiness
from .edge import client_address

LOOPBACK_PREFIXES = ("127.", "::1", "::ffff:127.")


def create_operations_router(settings: Settings, engine) -> APIRouter:
    router = APIRouter()
    if settings.metrics:
        metrics.watch_present_state(metrics.PresentState(engine.load_report, ledger.open_holds))

    @router.get("/healthz")
    async def healthz():
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    @router.get("/readyz")
    async def readyz():
        ready, checks = await asyncio.to_thread(check_readiness, engine)
        return JSONResponse(
            {"status": "ready" if ready else "not ready", **checks}, status_code=200 if ready else 503,
            headers={"Cache-Control": "no-store"},
        )

    @router.get("/metrics")
    async def metrics_route(request: Request):
        if not settings.metrics or not await asyncio.to_thread(_may_scrape, request, settings):
            return Response("Not Found", status_code=404, media_type="text/plain")
        body = await asyncio.to_thread(metrics.exposition)
        return Response(body, media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    return router


def _may_scrape(request: Request, settings: Settings) -> bool:
    """A scraper on this machine, or anywhere with an administrator's API key (Bearer)."""
    if client_address(request.scope).startswith(LOOPBACK_PREFIXES):
        return True
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        return False
    user = keys.resolve_key(key.strip())
    return user is not None and user.is_admin and not user.is_disabled


class CountApiResponses:
    """ASGI middleware: /v1 responses by status, whatever route or error produced them."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)

        async def counting_send(message):
            if message["type"] == "http.response.start":
                metrics.api_requests.labels(str(message["status"])).inc()
            await send(message)

        return await self.app(scope, receive, counting_send)
