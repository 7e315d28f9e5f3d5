"""``/healthz`` (Redis, workers, key providers) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from pipeline.api.auth import RuntimeDep
from pipeline.api.problems import problem, problem_responses
from pipeline.errors import StoreUnavailable
from pipeline.services.health import Health, check_health

__all__ = ["router"]

router = APIRouter(tags=["operations"])

_CACHE_S = 5.0  # probes come every few seconds; a worker ping costs up to a second


class HealthOut(BaseModel):
    ok: bool
    redis: str
    workers: int
    key_providers: str


@router.get("/healthz", responses={503: {"model": HealthOut, "description": "unhealthy"}})
async def healthz(request: Request, rt: RuntimeDep, response: Response) -> HealthOut:
    """Redis and key providers must answer; ``workers`` counts the workers that replied."""
    cached: Health | None = getattr(request.app.state, "health", None)
    if cached is None or time.time() - cached.checked > _CACHE_S:
        cached = await run_in_threadpool(check_health, rt)
        request.app.state.health = cached
    if not cached.ok:
        response.status_code = 503
    return HealthOut(
        ok=cached.ok, redis=cached.redis, workers=cached.workers, key_providers=cached.key_providers
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **problem_responses(503)},
)
async def metrics(request: Request) -> Response:
    """Counters and histograms; labels name kinds and reasons only, never content. 503 while
    Redis, where the queue depth is read at scrape time, is unreachable."""
    try:
        body = await run_in_threadpool(generate_latest, request.app.state.registry)
    except StoreUnavailable:
        return problem(
            503, "Redis is unreachable: the queue depth cannot be read", "store-unavailable"
        )
    return Response(body, media_type=CONTENT_TYPE_LATEST)
