"""Live captions over WebSocket: ``/v1/meetings/{id}/captions?cursor=...``.

Authenticated like every route, with ``Authorization: Bearer`` or, for browsers (which
cannot set headers on a WebSocket), the RFC 6750 ``access_token`` query parameter. Each
message is one JSON caption: ``{"cursor", "participant", "start_ms", "end_ms", "text",
"language"}``; reconnect with the last ``cursor`` received to miss nothing and get nothing
twice. Errors close the socket with code 4401 (unauthenticated), 4404 (not found), 4400
(bad cursor), 4403 (the tenant revoked its key) or 1011 (store unavailable), and a reason.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool

from pipeline.errors import OURS, AuthenticationFailed, kind_of
from pipeline.runtime import Runtime
from pipeline.services.captions import follow_captions, parse_cursor
from pipeline.services.meetings import get_meeting

__all__ = ["router"]

router = APIRouter()


def _token(ws: WebSocket) -> str:
    header = ws.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    token = ws.query_params.get("access_token")
    if not token:
        raise AuthenticationFailed("a bearer token is required (header or access_token)")
    return token


@router.websocket("/v1/meetings/{meeting_id}/captions")
async def captions(ws: WebSocket, meeting_id: str, cursor: str = "0") -> None:
    rt: Runtime = ws.app.state.runtime
    # Accept first: a socket refused before the handshake completes reaches the client as a
    # bare HTTP 403, so the close code and reason below would be lost.
    await ws.accept()
    try:
        tenant = await run_in_threadpool(rt.store.tenants.authenticate, _token(ws))
        meeting = await run_in_threadpool(get_meeting, rt, meeting_id, tenant.id)
        cursor = parse_cursor(cursor)
    except OURS as exc:
        await ws.close(code=kind_of(exc).close_code, reason=str(exc)[:120])
        return
    feed = follow_captions(rt, meeting, cursor)
    closed = asyncio.create_task(_closed(ws))
    try:
        while True:
            nxt = asyncio.ensure_future(anext(feed))
            done, _ = await asyncio.wait({nxt, closed}, return_when=asyncio.FIRST_COMPLETED)
            if closed in done:
                nxt.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await nxt
                return
            await ws.send_json(nxt.result().to_dict())
    except WebSocketDisconnect:
        return
    except OURS as exc:  # e.g. revoked while following: the key is refused
        with contextlib.suppress(Exception):
            await ws.close(code=kind_of(exc).close_code, reason=str(exc)[:120])
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
