"""The FastAPI application: routes, the error mapping, request body limits, lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, Metric
from prometheus_client.registry import Collector

from pipeline import faults
from pipeline.api import (
    captions,
    consent,
    console,
    health,
    keys,
    meetings,
    problems,
    tenant,
    tokens,
    webhooks,
    whip,
)
from pipeline.capture.ice import configure_ice
from pipeline.capture.whip import WhipIngest
from pipeline.config import get_settings
from pipeline.metrics import QueueCollector, WebhookQueueCollector
from pipeline.runtime import Runtime, default_actor
from pipeline.services.captions import CaptionHub
from pipeline.services.health import queue_depth
from pipeline.services.webhook_delivery import queue_age

__all__ = ["MAX_BODY_BYTES", "create_app"]

#: JSON bodies are small; WHIP offers have their own limit
MAX_BODY_BYTES = 64 * 1024


def create_app(rt: Runtime | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = rt or Runtime.from_settings(get_settings(), default_actor("api"))
        if runtime.settings.ice_hosts:  # else leave the process's setting alone
            configure_ice(runtime.settings.ice_hosts)
        app.state.runtime = runtime
        app.state.whip = WhipIngest(runtime)
        app.state.captions = CaptionHub(runtime)  # one Redis pool for every caption socket
        app.state.registry = _registry(runtime)
        try:
            yield
        finally:
            await app.state.whip.close()
            await app.state.captions.close()

    # /docs and /redoc load Swagger UI and ReDoc from a public CDN into the API's origin: off
    # unless the operator asks (SEALSCRIBE_API_DOCS=1); /openapi.json is always served.
    docs = (rt.settings if rt is not None else get_settings()).api_docs or faults.on("docs-on")
    app = FastAPI(
        title="sealscribe",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        description="Privacy-preserving meeting transcription. Every route but "
        "/healthz, /metrics and the console needs `Authorization: "
        "Bearer <tenant token>`, a token with one of the scopes the route names (`admin`, "
        "`meetings`, `read`; `admin` holds all three). Tokens never go into URLs: the "
        "caption socket takes a short-lived ticket (`POST .../captions/ticket`).",
    )
    problems.register(app)

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return problems.problem(
                413, f"the request body is larger than {MAX_BODY_BYTES} bytes", "body-too-large"
            )
        return await call_next(request)

    for module in (
        tenant,
        meetings,
        whip,
        captions,
        keys,
        tokens,
        webhooks,
        health,
        console,
        consent,
    ):
        app.include_router(module.router)
    return app


def _registry(rt: Runtime) -> CollectorRegistry:
    """The process's metrics plus queue depth read from Redis at scrape time."""
    registry = CollectorRegistry()
    registry.register(_Forward(REGISTRY))
    registry.register(QueueCollector(lambda: queue_depth(rt)))
    registry.register(WebhookQueueCollector(lambda: queue_age(rt)))
    return registry


class _Forward(Collector):
    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()
