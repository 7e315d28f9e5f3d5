"""The tenant's key (status, rotate, retire, revoke) and its audit log (show, verify)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from keys.audit import AuditEntry
from pipeline.api.auth import Admin, RuntimeDep
from pipeline.api.problems import MAX_JSON_BYTES, StrictBody, problem_responses
from pipeline.errors import InvalidInput
from pipeline.services import custody

__all__ = ["router"]

router = APIRouter(
    prefix="/v1", tags=["keys"], max_body_size=MAX_JSON_BYTES, responses=problem_responses(401, 503)
)


class KeysOut(BaseModel):
    provider: str
    primary_version: int
    min_version: int
    versions: list[int]
    revoked: bool
    wrapped_by_version: dict[str, int] = Field(
        description="stored data keys wrapped under each tenant key version"
    )


class RotationOut(BaseModel):
    primary_version: int
    rewrapped: int


class RetireIn(StrictBody):
    below: int = Field(ge=1, description="retire every version below this one")


class RetireOut(BaseModel):
    min_version: int = Field(description="the oldest version still usable")
    retired_below: int
    rewrapped: int = Field(description="data keys moved off the retired versions first")


class RevokeIn(StrictBody):
    confirm: str = Field(description='must be "revoke TENANT_ID": revocation is irreversible')


class AuditEntryOut(BaseModel):
    seq: int
    at: float
    action: str
    outcome: str
    actor: str
    meeting: str | None
    purpose: str | None
    key_version: int | None
    hash: str

    @classmethod
    def of(cls, e: AuditEntry) -> AuditEntryOut:
        return cls(
            seq=e.seq,
            at=e.at,
            action=e.action,
            outcome=e.outcome,
            actor=e.actor,
            meeting=e.meeting,
            purpose=e.purpose,
            key_version=e.key_version,
            hash=e.hash,
        )


class AuditPage(BaseModel):
    offset: int
    limit: int
    entries: list[AuditEntryOut]


class VerifyOut(BaseModel):
    ok: bool
    entries: int
    problems: list[str]


def _keys(rt: RuntimeDep, tenant_id: str) -> KeysOut:
    report = custody.key_status(rt, tenant_id)
    s = report.status
    return KeysOut(
        provider=s.provider,
        primary_version=s.primary_version,
        min_version=s.min_version,
        versions=list(s.versions),
        revoked=s.revoked,
        wrapped_by_version={str(v): n for v, n in report.wrapped_by_version.items()},
    )


@router.get("/keys")
def status(tenant: Admin, rt: RuntimeDep) -> KeysOut:
    return _keys(rt, tenant.id)


@router.post("/keys/rotate", responses=problem_responses(403))
def rotate(tenant: Admin, rt: RuntimeDep) -> RotationOut:
    """A new key version; every data key is rewrapped (no content is re-encrypted)."""
    r = custody.rotate_keys(rt, tenant.id)
    return RotationOut(primary_version=r.primary_version, rewrapped=r.rewrapped)


@router.post("/keys/retire", responses=problem_responses(400, 403, 409))
def retire(body: RetireIn, tenant: Admin, rt: RuntimeDep) -> RetireOut:
    """Retire old versions once nothing is wrapped under them."""
    moved = custody.retire_keys(rt, tenant.id, body.below)
    status = custody.key_status(rt, tenant.id).status
    return RetireOut(min_version=status.min_version, retired_below=body.below, rewrapped=moved)


@router.post("/keys/revoke", responses=problem_responses(400))
def revoke(body: RevokeIn, tenant: Admin, rt: RuntimeDep) -> KeysOut:
    """The kill switch: nothing of this tenant can be opened again; queued work is purged."""
    if body.confirm != f"revoke {tenant.id}":
        raise InvalidInput(f'revoking is irreversible: send confirm = "revoke {tenant.id}"')
    custody.revoke_keys(rt, tenant.id)
    return _keys(rt, tenant.id)


@router.get("/audit")
def audit(
    tenant: Admin,
    rt: RuntimeDep,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Every use of the tenant's key, oldest first, a page at a time."""
    entries = custody.audit_show(rt, tenant.id, offset, limit)
    return AuditPage(offset=offset, limit=limit, entries=[AuditEntryOut.of(e) for e in entries])


@router.get("/audit/verify")
def verify(tenant: Admin, rt: RuntimeDep) -> VerifyOut:
    """Walk the hash chain; names each entry that was altered, removed or reordered."""
    r = custody.audit_verify(rt, tenant.id)
    return VerifyOut(ok=r.ok, entries=r.entries, problems=list(r.problems))
