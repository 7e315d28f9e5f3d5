"""The calling tenant: who it is, its retention, its bot's spoken announcements, and the
export of everything it owns."""

from __future__ import annotations

import io
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from pipeline.api.auth import Admin, RuntimeDep, Viewer
from pipeline.api.problems import MAX_JSON_BYTES, StrictBody, problem_responses
from pipeline.errors import InvalidInput
from pipeline.services import tenants
from pipeline.services.retention import (
    MAX_AUDIO_TTL,
    MAX_TRANSCRIPT_TTL,
    retention,
    set_retention,
)
from pipeline.services.rights import write_export

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/tenant",
    tags=["tenant"],
    max_body_size=MAX_JSON_BYTES,
    responses=problem_responses(401, 503),
)


class RetentionOut(BaseModel):
    transcript_ttl: int = Field(description="seconds a transcript is kept")
    audio_ttl: int = Field(description="longest audio may wait untranscribed, in seconds")


class RetentionIn(StrictBody):  # strict: true is not a one-second retention
    transcript_ttl: int | None = Field(default=None, ge=1, le=MAX_TRANSCRIPT_TTL)
    audio_ttl: int | None = Field(default=None, ge=1, le=MAX_AUDIO_TTL)


class TenantOut(BaseModel):
    id: str
    name: str
    created: float
    revoked: bool
    key_provider: str
    retention: RetentionOut


@router.get("")
def me(tenant: Viewer, rt: RuntimeDep) -> TenantOut:
    r = retention(rt, tenant)
    return TenantOut(
        id=tenant.id,
        name=tenant.name,
        created=tenant.created,
        revoked=tenant.revoked,
        key_provider=tenant.key_provider,
        retention=RetentionOut(transcript_ttl=r.transcript_ttl, audio_ttl=r.audio_ttl),
    )


@router.put("/retention", responses=problem_responses(400))
def put_retention(body: RetentionIn, tenant: Admin, rt: RuntimeDep) -> RetentionOut:
    """Applies to content written from now on; the purge enforces it."""
    r = set_retention(rt, tenant.id, body.transcript_ttl, body.audio_ttl)
    return RetentionOut(transcript_ttl=r.transcript_ttl, audio_ttl=r.audio_ttl)


@router.get(
    "/export",
    response_class=Response,
    responses={
        200: {
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "every meeting's metadata and transcript (json, vtt) and the audit "
            "log; opened with purpose deliver, built in memory",
        },
        **problem_responses(403),
    },
)
async def export(tenant: Admin, rt: RuntimeDep) -> Response:
    buf = io.BytesIO()
    await run_in_threadpool(write_export, rt, tenant.id, buf)
    return Response(
        buf.getvalue(),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="sealscribe-{tenant.id}.zip"',
            "Cache-Control": "no-store",
        },
    )


Kind = Annotated[Literal["join", "on", "off"], Path(description="when the bot says it")]


class AnnouncementIn(StrictBody):
    text: str | None = Field(
        None, min_length=1, max_length=500, description="spoken by espeak-ng; null: default"
    )


@router.get("/announcements")
def get_announcements(tenant: Viewer, rt: RuntimeDep) -> dict[str, str]:
    """What the bot says aloud when it joins and when transcription is switched on or off:
    ``own`` or ``default`` for each."""
    return tenants.announcements(rt, tenant.id)


@router.put("/announcements/{kind}", responses=problem_responses(400, 403))
async def put_announcement(
    kind: Kind, request: Request, tenant: Admin, rt: RuntimeDep
) -> dict[str, str]:
    """Your own announcement: JSON ``{"text": ...}`` (spoken by espeak-ng where it is
    installed, else refused), ``{"text": null}`` for the default, or an audio file (any
    ``audio/*`` body PyAV reads, at most 30 s and 64 KiB)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if media.startswith("audio/"):
        return await run_in_threadpool(tenants.set_announcement, rt, tenant.id, kind, None, body)
    if media != "application/json":
        raise InvalidInput('send JSON {"text": ...} or an audio/* file')
    try:
        text = AnnouncementIn.model_validate_json(body).text
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    return await run_in_threadpool(tenants.set_announcement, rt, tenant.id, kind, text)
