"""Live captions over WebSocket: ``/v1/meetings/{id}/captions?cursor=...``, and the tickets
that let a browser open one without putting its token in a URL.

A long-lived token never travels in a URL (proxies log URLs). A client that can set headers
sends ``Authorization: Bearer``; a browser, which cannot on a WebSocket, first asks
``POST /v1/meetings/{id}/captions/ticket`` (with its token, in the header) for a ticket: good
for one socket on that meeting, within 60 seconds, stored only hashed, and taken when used.
It then connects with ``?ticket=...``. A token in the URL (``access_token=``) is refused with
4401. Either way the token needs the ``read`` or ``meetings`` scope.

Each message is one JSON caption (:meth:`pipeline.services.captions.Caption.to_dict`):
``{"kind": "final", "cursor", "utterance", "participant", "start_ms", "end_ms", "text",
"language"}`` for a transcript segment, or ``{"kind": "interim", "cursor", "utterance",
"part", ...the same}`` for the text so far of an utterance still being spoken. ``utterance``
(``PARTICIPANT.SEQ``, the final segment's id) is shared by an utterance's interims and its
final: show each newer interim (higher ``part``) in the utterance's place, then the final
instead. Reconnect with the last ``cursor`` received (of either kind) to miss no final and
get none twice; interims are a preview only, and one superseded while the client was away is
not sent again. Errors close the socket with code 4401 (unauthenticated, or the token was revoked or
rotated while the socket was open), 4403 (the token lacks the scope, or the tenant revoked
its key), 4404 (not found), 4400 (bad cursor), 4429 (the meeting or the tenant already has
as many caption sockets open as allowed, or too many failed authentications from this
address) or 1011 (store unavailable), and a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from keys.errors import KeyRevoked
from pipeline import faults, ids
from pipeline.api.auth import CurrentCaller, RuntimeDep, Viewer, client_address
from pipeline.api.meetings import MeetingId
from pipeline.api.problems import problem_responses
from pipeline.errors import OURS, AuthenticationFailed, kind_of
from pipeline.models import Meeting, Scope
from pipeline.runtime import Runtime
from pipeline.services.captions import CaptionHub, CaptionSocket, follow_captions, parse_cursor
from pipeline.services.meetings import get_meeting
from pipeline.services.tokens import Caller, issue_ticket, redeem_ticket, require_scope, sign_in
from pipeline.store.tickets import TICKET_TTL

__all__ = ["router"]

router = APIRouter()

CAPTIONS = "/v1/meetings/{meeting_id}/captions"


class TicketOut(BaseModel):
    ticket: str = Field(description="for one caption socket on this meeting; used up then")
    expires_in: int = Field(description="seconds it can be used in")
    url: str = Field(description="the socket's path with the ticket (add ?cursor= to resume)")


@router.post(
    CAPTIONS + "/ticket",
    tags=["meetings"],
    responses=problem_responses(401, 404, 503),
)
def caption_ticket(
    meeting_id: MeetingId, tenant: Viewer, caller: CurrentCaller, rt: RuntimeDep
) -> TicketOut:
    """A short-lived, single-use ticket to open this meeting's caption socket with
    (``?ticket=``), so that the token itself never goes into a URL."""
    ticket = issue_ticket(rt, caller, meeting_id)
    return TicketOut(
        ticket=ticket,
        expires_in=TICKET_TTL,
        url=CAPTIONS.format(meeting_id=meeting_id) + f"?ticket={ticket}",
    )


def _caller(rt: Runtime, ws: WebSocket, meeting_id: str) -> Caller:
    """Who opens the socket: by a ticket in the URL, or a token in the header; never by a
    token in the URL."""
    client = client_address(ws, rt.settings)
    header = ws.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return sign_in(rt, header[7:].strip(), client)
    ticket = ws.query_params.get("ticket")
    if ticket:
        return redeem_ticket(rt, ticket, meeting_id, client)
    token = ws.query_params.get("access_token")
    if token is not None:
        if faults.on("long-token-in-url"):
            return sign_in(rt, token, client)
        raise AuthenticationFailed(
            "tokens are not accepted in URLs: POST .../captions/ticket and connect with ?ticket="
        )
    raise AuthenticationFailed("a ?ticket= or an Authorization: Bearer token is required")


def _open(rt: Runtime, ws: WebSocket, meeting_id: str) -> tuple[Caller, Meeting]:
    meeting_id = ids.meeting_id(meeting_id)
    caller = _caller(rt, ws, meeting_id)
    require_scope(caller, Scope.READ, Scope.MEETINGS)
    meeting = get_meeting(rt, meeting_id, caller.tenant.id)
    if caller.tenant.revoked:
        raise KeyRevoked(f"the key of tenant {caller.tenant.id} was revoked")
    return caller, meeting


@router.websocket(CAPTIONS)
async def captions(ws: WebSocket, meeting_id: str, cursor: str = "0") -> None:
    rt: Runtime = ws.app.state.runtime
    hub: CaptionHub = ws.app.state.captions
    # Accept first: a socket refused before the handshake completes reaches the client as a
    # bare HTTP 403, so the close code and reason below would be lost.
    await ws.accept()
    try:
        async with hub.admitting:
            caller, meeting = await run_in_threadpool(_open, rt, ws, meeting_id)
        cursor = parse_cursor(cursor)
        async with hub.socket(caller.tenant.id, meeting.id, caller.token.digest) as sock:
            await _follow(ws, rt, hub, meeting, cursor, sock)
    except WebSocketDisconnect:
        return
    except OURS as exc:  # refused, or ended: revoked token or key, store gone
        with contextlib.suppress(Exception):
            await ws.close(code=kind_of(exc).close_code, reason=str(exc)[:120])


async def _follow(
    ws: WebSocket, rt: Runtime, hub: CaptionHub, meeting: Meeting, cursor: str, sock: CaptionSocket
) -> None:
    """Send captions until the client goes, or the socket must end (raised)."""
    feed = follow_captions(rt, meeting, cursor, hub)
    closed = asyncio.create_task(_closed(ws))
    try:
        while True:
            nxt = asyncio.ensure_future(anext(feed))
            waiting: set[asyncio.Future[Any]] = {nxt, closed, sock.ended}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if closed in done or sock.ended in done:
                nxt.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await nxt
                if sock.ended.done():
                    raise sock.ended.result()
                return
            await ws.send_json(nxt.result().to_dict())
    finally:
        closed.cancel()
        await feed.aclose()


async def _closed(ws: WebSocket) -> None:
    """Returns when the client goes away (clients send nothing else)."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
