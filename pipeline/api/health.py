"""``/healthz`` (Redis, workers, key providers) and ``/metrics`` (Prometheus).

Both answer without a tenant token. ``/healthz`` tells anyone only *whether* the key provider
answers; why not (a KMS's error text) is logged, and shown only to an admin token.
``/metrics`` needs ``Authorization: Bearer <SEALSCRIBE_METRICS_TOKEN>`` when that is set.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from pipeline import faults
from pipeline.api.auth import RuntimeDep, client_address
from pipeline.api.problems import problem, problem_responses
from pipeline.errors import OURS, StoreUnavailable
from pipeline.metrics import authorized
from pipeline.models import Scope
from pipeline.runtime import Runtime
from pipeline.services.health import Health, check_health
from pipeline.services.tokens import sign_in

__all__ = ["router"]

router = APIRouter(tags=["operations"])

_CACHE_S = 5.0  # probes come every few seconds; a worker ping costs up to a second


class HealthOut(BaseModel):
    ok: bool
    redis: str
    workers: int
    key_providers: str = Field(description='"ok" or "unavailable"')
    key_providers_detail: str | None = Field(
        default=None, description="why the key providers are unavailable: admin tokens only"
    )


def _is_admin(rt: Runtime, authorization: str, client: str) -> bool:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    try:
        return sign_in(rt, token.strip(), client).token.allows(Scope.ADMIN)
    except OURS:
        return False  # a probe with a bad token still gets its answer, without the detail


@router.get(
    "/healthz",
    response_model_exclude_none=True,
    responses={503: {"model": HealthOut, "description": "unhealthy"}},
)
async def healthz(request: Request, rt: RuntimeDep, response: Response) -> HealthOut:
    """Redis and key providers must answer; ``workers`` counts the workers that replied.
    No token is needed. Why a key provider does not answer is logged, and shown
    (``key_providers_detail``) only to a request with an admin token (``Authorization:
    Bearer``), since a KMS's error text describes the operator's infrastructure."""
    cached: Health | None = getattr(request.app.state, "health", None)
    if cached is None or time.time() - cached.checked > _CACHE_S:
        cached = await run_in_threadpool(check_health, rt)
        request.app.state.health = cached
    if not cached.ok:
        response.status_code = 503
    out = HealthOut(
        ok=cached.ok, redis=cached.redis, workers=cached.workers, key_providers=cached.key_providers
    )
    if faults.on("healthz-detail"):  # the provider's error text, to anyone
        out.key_providers = cached.key_providers_detail
    elif authorization := request.headers.get("authorization", ""):
        client = client_address(request, rt.settings)
        if await run_in_threadpool(_is_admin, rt, authorization, client):
            out.key_providers_detail = cached.key_providers_detail
    return out


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **problem_responses(401, 503)},
)
async def metrics(request: Request, rt: RuntimeDep) -> Response:
    """Counters and histograms; labels name kinds and reasons only, never content. 503 while
    Redis, where the queue depth is read at scrape time, is unreachable. With
    ``SEALSCRIBE_METRICS_TOKEN`` set, only ``Authorization: Bearer <that token>`` is answered."""
    if not authorized(request.headers.get("authorization"), rt.settings.metrics_token):
        return problem(
            401,
            "metrics need Authorization: Bearer <SEALSCRIBE_METRICS_TOKEN>",
            "unauthenticated",
            {"WWW-Authenticate": "Bearer"},
        )
    try:
        body = await run_in_threadpool(generate_latest, request.app.state.registry)
    except StoreUnavailable:
        return problem(
            503, "Redis is unreachable: the queue depth cannot be read", "store-unavailable"
        )
    return Response(body, media_type=CONTENT_TYPE_LATEST)
