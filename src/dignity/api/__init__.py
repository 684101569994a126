"""The HTTP service: ``create_app()`` builds the FastAPI app (native ``/v1`` API, HMA-compatible
routes, health and metrics) over one process's services.

Every route but ``/healthz``, ``/readyz``, HMA's ``/status`` and the docs needs
``Authorization: Bearer <key>``. Request bodies are capped before they are read (413), heavy
work runs under a concurrency cap and a time limit (503), and errors are JSON
``{code, message, detail}`` mapped in errors.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic.json_schema import models_json_schema

from dignity import __version__, decode_pool
from dignity.api import (
    audit,
    errors,
    events,
    feed,
    hma,
    jobs,
    notices,
    pages,
    portal,
    report,
    review,
    sources,
    takedown,
    v1,
)
from dignity.api.deps import ServicesDep, require
from dignity.api.metrics import Metrics
from dignity.api.schemas import (
    BackgroundTaskOut,
    EntriesIn,
    ErrorBody,
    HashByUrl,
    Health,
    MatchByHashes,
)
from dignity.decode_pool import DecodePool
from dignity.services import build_services
from dignity.settings import Settings, load_settings
from dignity.worker import engine as job_engine

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Routes whose bodies may be large (bulk import); every other body is capped near max_bytes.
_IMPORT_SUFFIX = "/import"
_MULTIPART_SLACK = 64 * 1024  # multipart boundaries and headers around the file itself

require_admin = Depends(require("admin"))


class BodyLimit:
    """Refuse bodies over the limit with 413, from Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        limit = (
            self.settings.max_import_bytes
            if path.endswith(_IMPORT_SUFFIX)
            else self.settings.max_bytes + _MULTIPART_SLACK
        )
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > limit:
                    await self._refuse(send, limit)
                    return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        response = JSONResponse(
            errors.error_body("request.too_large", f"the body is larger than {limit} bytes"),
            status_code=413,
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(k.encode(), v.encode()) for k, v in response.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": response.body})


class Measure:
    """Count and time every request by route template (pure ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.observe(
                scope.get("method", ""), template, status, time.perf_counter() - start
            )


class _TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        # The background loops and the job engine (the embedded runner, or Celery's dispatcher).
        job_engine.start(services)
        app.state.services = services
        # Risky image decodes run in worker processes that the time limit can kill.
        pool = DecodePool(
            settings.decode_workers or settings.max_concurrency, settings.decode_timeout_s
        )
        pool.start()
        decode_pool.install(pool)
        try:
            yield
        finally:
            decode_pool.install(None)
            pool.close()
            services.stop()

    app = FastAPI(
        title="dignity",
        version=__version__,
        description=(
            "Hash images, keep banks of known NCII hashes, match and scan uploads. "
            "Authenticate with `Authorization: Bearer <key>` (`dignity key create --role ...`)."
        ),
        lifespan=lifespan,
        # /docs is served by pages.py from this origin; ReDoc only exists as a CDN script.
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    metrics = Metrics()
    app.state.metrics = metrics

    # Each feature's routes live in its own module with a ``router``.
    features = (v1, jobs, hma, events, portal, feed, sources, pages, takedown, review, notices)
    for module in (*features, report, audit):
        app.include_router(module.router)

    @app.get("/healthz", response_model=Health, tags=["health"], summary="The process is up")
    def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["health"],
        responses={503: {"model": Health}},
        summary="The index is loaded and kept current; every background task with its last "
        "success and error",
    )
    def readyz(services: ServicesDep) -> Any:
        if not services.engine.loaded:
            return JSONResponse({"status": "loading"}, status_code=503)
        tasks = services.supervisor.status()
        stalled = services.supervisor.stalled()
        body = Health(
            status="ready",
            entries=len(services.engine),
            background={
                name: BackgroundTaskOut.model_validate(t.to_dict()) for name, t in tasks.items()
            },
            stalled=stalled,
        )
        if "index-refresh" in stalled:
            # Matching against an index that no longer follows the change log could match a
            # withdrawn hash: a balancer should send scans elsewhere.
            body.status = "stale"
            return JSONResponse(body.model_dump(), status_code=503)
        if stalled:
            body.status = "degraded"
        return body

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["health"],
        responses={s: {"model": ErrorBody} for s in (401, 403, 429)},
        summary="Prometheus metrics (admin key)",
    )
    def metrics_route(services: ServicesDep, _: Any = require_admin) -> PlainTextResponse:
        return PlainTextResponse(
            metrics.render(services), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    def openapi() -> dict[str, Any]:
        # Routes that take "a file or JSON" declare their JSON bodies by reference; FastAPI
        # only emits components for models used as parameters, so add those here.
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _, defs = models_json_schema(
                [(m, "validation") for m in (HashByUrl, MatchByHashes, EntriesIn, jobs.JobIn)],
                ref_template="#/components/schemas/{model}",
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, body in defs.get("$defs", {}).items():
                components.setdefault(name, body)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(Measure, metrics=metrics)
    app.add_middleware(audit.ActorScope)  # each request starts as "anonymous" in the audit log
    return app


def app_factory() -> FastAPI:
    """For ``uvicorn --factory dignity.api:app_factory`` (settings from DIGNITY_*)."""
    return create_app()


__all__ = ["app_factory", "create_app"]
