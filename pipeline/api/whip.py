"""WHIP ingest (RFC 9725): ``POST /v1/meetings/{id}/whip`` with an SDP offer.

201 with the SDP answer and, in ``Location``, the session's resource URL; ``DELETE`` on it ends
the session. Trickle ICE and ICE restarts (``PATCH``) are not supported (405): the answer
holds every candidate. The participant is named by ``?participant=NAME``, else "whip".
An offer sent as anything but ``application/sdp`` gets 415; a revoked tenant gets 403 (nothing
it sends could be sealed).

One audio track per session is received: the offer's first audio section is answered
``recvonly`` and every other (more audio, video) ``inactive``; an offer with more than 16 media
sections gets 400. A meeting or tenant that already holds ``SEALSCRIBE_WHIP_PER_MEETING`` /
``SEALSCRIBE_WHIP_PER_TENANT`` sessions (across every API process) gets 429 with
``Retry-After`` (:mod:`pipeline.capture.whip`).

A meeting's sessions are captured by one API process, so that its tracks are compared for
crosstalk: an offer for a meeting whose sessions another process holds is answered ``307``
with ``Location`` the same request on that process (``SEALSCRIBE_WHIP_URL``; RFC 9725
section 4.5). The publisher sends the offer again there.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from keys.errors import KeyRevoked
from pipeline.api.auth import Meetings, RuntimeDep
from pipeline.api.meetings import MeetingId
from pipeline.api.problems import problem, problem_responses
from pipeline.capture.whip import MAX_OFFER_BYTES, WhipElsewhere, WhipIngest
from pipeline.errors import InvalidInput, NotFound
from pipeline.services import meetings

__all__ = ["router"]

router = APIRouter(prefix="/v1/meetings", tags=["whip"], responses=problem_responses(401, 404, 503))

SessionId = Annotated[str, Path(pattern=r"^w_[0-9a-f]{16}$")]
SDP = "application/sdp"


def _ingest(request: Request) -> WhipIngest:
    ingest: WhipIngest = request.app.state.whip
    return ingest


def _is_sdp(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == SDP


async def _body(request: Request) -> str:
    """The offer, read with a size limit whatever Content-Length claims."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_OFFER_BYTES:
            raise OfferTooLarge(f"the SDP offer is larger than {MAX_OFFER_BYTES} bytes")
        chunks.append(chunk)
    try:
        return b"".join(chunks).decode()
    except UnicodeDecodeError:
        raise InvalidInput("the SDP offer is not UTF-8 text") from None


class OfferTooLarge(InvalidInput):
    pass


@router.post(
    "/{meeting_id}/whip",
    status_code=status.HTTP_201_CREATED,
    response_class=Response,
    responses={
        201: {"content": {SDP: {}}, "description": "the SDP answer"},
        307: {
            "description": "the meeting's WHIP sessions are held by the API process in "
            "Location: send the offer there"
        },
        **problem_responses(400, 403, 413, 415, 429),
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {SDP: {"schema": {"type": "string"}}}}
    },
)
async def publish(
    meeting_id: MeetingId,
    request: Request,
    tenant: Meetings,
    rt: RuntimeDep,
    participant: Annotated[str, Query(min_length=1, max_length=64)] = "whip",
) -> Response:
    meeting = await run_in_threadpool(meetings.get_meeting, rt, meeting_id, tenant.id)
    if tenant.revoked:
        raise KeyRevoked(f"the key of tenant {tenant.id} was revoked: nothing can be captured")
    if not _is_sdp(request):
        return problem(
            415,
            "a WHIP offer must be sent as Content-Type: application/sdp",
            "unsupported-media-type",
            headers={"Accept-Post": SDP},
        )
    try:
        sdp = await _body(request)
    except OfferTooLarge as exc:
        return problem(413, str(exc), "offer-too-large")
    try:
        session_id, answer = await _ingest(request).offer(meeting, sdp, participant)
    except WhipElsewhere as exc:
        query = f"?{request.url.query}" if request.url.query else ""
        return Response(
            status_code=307, headers={"Location": exc.base_url + request.url.path + query}
        )
    # absolute on this process when it has a URL of its own (a redirected publisher, or one
    # behind a proxy that routes by a path prefix, sends its DELETE here)
    location = f"{rt.settings.whip_url}/v1/meetings/{meeting_id}/whip/{session_id}"
    return Response(
        answer,
        status_code=201,
        media_type=SDP,
        headers={"Location": location, "ETag": f'"{session_id}"'},
    )


@router.delete(
    "/{meeting_id}/whip/{session_id}", status_code=status.HTTP_200_OK, response_class=Response
)
async def end(
    meeting_id: MeetingId, session_id: SessionId, request: Request, tenant: Meetings
) -> Response:
    ingest = _ingest(request)
    if ingest.get(session_id, tenant.id).meeting_id != meeting_id:
        raise NotFound(f"WHIP session {session_id} does not exist")
    await ingest.end(session_id)
    return Response(status_code=200)


@router.patch(
    "/{meeting_id}/whip/{session_id}",
    status_code=405,
    response_class=Response,
    responses={405: {**problem_responses(405)[405], "description": "trickle ICE is not supported"}},
)
async def trickle(
    meeting_id: MeetingId, session_id: SessionId, request: Request, tenant: Meetings
) -> Response:
    """Authenticated like every route: 404 for a session that is not the caller's."""
    if _ingest(request).get(session_id, tenant.id).meeting_id != meeting_id:
        raise NotFound(f"WHIP session {session_id} does not exist")
    return problem(
        405,
        "trickle ICE and ICE restarts are not supported; the answer holds every candidate",
        "method-not-allowed",
        headers={"Allow": "DELETE"},
    )
