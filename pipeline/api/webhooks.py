"""The tenant's webhook endpoints (``admin`` scope): add, list, remove, rotate the secret,
read the delivery log, replay.

A secret is shown once, in the answer that creates or rotates it; Redis keeps it sealed.
A URL whose host the egress policy refuses is answered 400 with one generic reason.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, Field

from pipeline.api.auth import Admin, RuntimeDep
from pipeline.api.problems import MAX_JSON_BYTES, StrictBody, problem_responses
from pipeline.runtime import Runtime
from pipeline.services import webhooks
from pipeline.store.webhooks import Attempt, Endpoint

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/webhooks",
    tags=["webhooks"],
    max_body_size=MAX_JSON_BYTES,
    responses=problem_responses(401, 403, 503),
)

#: an event type, or "*" for all of them
EventName = Literal["*"] | webhooks.EventName
EndpointId = Annotated[str, Path(pattern=r"^wh_[0-9a-f]{16}$", description="endpoint id")]


class EndpointOut(BaseModel):
    id: str
    url: str
    events: list[str] = Field(description="event types it receives; ['*']: all")
    created: float
    enabled: bool
    disabled_reason: str = Field(description="why it was disabled ('' while enabled)")
    disabled_at: float | None
    failing_since: float | None = Field(
        description="when deliveries started failing without a success since; null: healthy"
    )
    waiting: int = Field(description="events waiting to be delivered")

    @classmethod
    def of(cls, e: Endpoint, waiting: int = 0) -> EndpointOut:
        return cls(
            id=e.id,
            url=e.url,
            events=list(e.events),
            created=e.created,
            enabled=not e.disabled,
            disabled_reason=e.disabled,
            disabled_at=e.disabled_at or None,
            failing_since=e.failing_since or None,
            waiting=waiting,
        )


class NewEndpointOut(EndpointOut):
    secret: str = Field(
        description="the signing secret (whsec_...): shown this once, stored sealed"
    )


class EndpointIn(StrictBody):
    url: str = Field(min_length=1, max_length=webhooks.MAX_URL)
    events: list[EventName] = Field(
        default_factory=list,
        max_length=len(webhooks.EVENTS) + 1,
        description="event types to receive; empty or ['*']: all",
    )


class AttemptOut(BaseModel):
    message_id: str
    event: str
    meeting_id: str | None
    at: float
    attempt: int
    outcome: str = Field(description="delivered, failed, refused or disabled")
    status: int | None = Field(description="the receiver's HTTP status; null: no answer")
    error: str
    next_try: float | None

    @classmethod
    def of(cls, a: Attempt) -> AttemptOut:
        return cls(
            message_id=a.message_id,
            event=a.event,
            meeting_id=a.meeting_id or None,
            at=a.at,
            attempt=a.attempt,
            outcome=a.outcome,
            status=a.status or None,
            error=a.error,
            next_try=a.next_try or None,
        )


class ReplayIn(StrictBody):
    message_id: str | None = Field(
        default=None,
        pattern=r"^msg_[0-9a-f]{24}$",
        description="send this kept message again; null: retry every waiting message now",
    )


class ReplayOut(BaseModel):
    streams: int = Field(description="streams (meetings, and the tenant's) scheduled")


def _out(rt: Runtime, e: Endpoint) -> EndpointOut:
    return EndpointOut.of(e, rt.store.webhooks.waiting(e.id))


@router.post("", status_code=status.HTTP_201_CREATED, responses=problem_responses(400, 429))
def add(body: EndpointIn, tenant: Admin, rt: RuntimeDep) -> NewEndpointOut:
    """A new endpoint; the answer carries its secret, shown this once."""
    endpoint, secret = webhooks.add_endpoint(rt, tenant.id, body.url, body.events)
    return NewEndpointOut(**_out(rt, endpoint).model_dump(), secret=secret)


@router.get("")
def list_(tenant: Admin, rt: RuntimeDep) -> list[EndpointOut]:
    """Every endpoint of the tenant (never a secret), oldest first."""
    return [_out(rt, e) for e in webhooks.list_endpoints(rt, tenant.id)]


@router.get("/{endpoint_id}", responses=problem_responses(404))
def get(endpoint_id: EndpointId, tenant: Admin, rt: RuntimeDep) -> EndpointOut:
    return _out(rt, webhooks.get_endpoint(rt, endpoint_id, tenant.id))


@router.delete(
    "/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(404),
)
def remove(endpoint_id: EndpointId, tenant: Admin, rt: RuntimeDep) -> Response:
    """The endpoint, its waiting events and its log are deleted."""
    webhooks.remove_endpoint(rt, endpoint_id, tenant.id)
    return Response(status_code=204)


@router.post("/{endpoint_id}/rotate-secret", responses=problem_responses(404))
def rotate_secret(endpoint_id: EndpointId, tenant: Admin, rt: RuntimeDep) -> NewEndpointOut:
    """A new secret; the old one keeps signing (a second signature) for 24 hours."""
    endpoint, secret = webhooks.rotate_secret(rt, endpoint_id, tenant.id)
    return NewEndpointOut(**_out(rt, endpoint).model_dump(), secret=secret)


@router.get("/{endpoint_id}/log", responses=problem_responses(404))
def log(
    endpoint_id: EndpointId,
    tenant: Admin,
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AttemptOut]:
    """The latest delivery attempts, newest first."""
    return [AttemptOut.of(a) for a in webhooks.delivery_log(rt, endpoint_id, tenant.id, limit)]


@router.post("/{endpoint_id}/replay", responses=problem_responses(404))
def replay(endpoint_id: EndpointId, body: ReplayIn, tenant: Admin, rt: RuntimeDep) -> ReplayOut:
    """Re-enable the endpoint if it was disabled, and send again: one kept message, or
    every waiting one now."""
    return ReplayOut(streams=webhooks.replay(rt, endpoint_id, tenant.id, body.message_id))


# the schema's event names are the service's, checked at import
