"""The tenant's key (status, rotate, retire, revoke) and its audit log (show, head,
verify)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from keys.audit import AuditEntry, AuditHead
from pipeline.api.auth import Admin, RuntimeDep
from pipeline.api.problems import MAX_JSON_BYTES, StrictBody, problem_responses
from pipeline.errors import InvalidInput
from pipeline.services import custody, rights

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
    participant: str | None = None
    hash: str
    mac: str = Field(description="the tenant key's MAC of the entry's position and hash")

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
            participant=e.participant,
            hash=e.hash,
            mac=e.mac,
        )


class AuditPage(BaseModel):
    offset: int
    limit: int
    entries: list[AuditEntryOut]


class VerifyOut(BaseModel):
    ok: bool
    entries: int
    problems: list[str]
    authenticated: int = Field(0, description="entries covered by a MAC checked with your key")
    since: int | None = Field(None, description="the saved head's entry count, if one was given")
    notes: list[str] = []


class HeadIO(StrictBody):
    """A head of your audit chain: keep it outside sealscribe and send it back to verify."""

    tenant: str = Field(max_length=64)
    count: int = Field(ge=1, le=10**12, description="entries up to and including the head")
    hash: str = Field(max_length=128)
    mac: str = Field(max_length=512)
    at: float = Field(description="when the head entry was written")
    taken: float = Field(description="when this head was taken")

    @classmethod
    def of(cls, h: AuditHead) -> HeadIO:
        return cls(tenant=h.tenant, count=h.count, hash=h.hash, mac=h.mac, at=h.at, taken=h.taken)

    def head(self) -> AuditHead:
        return AuditHead(self.tenant, self.count, self.hash, self.mac, self.at, self.taken)


class VerifyIn(StrictBody):
    since: HeadIO | None = Field(None, description="a head you saved: the chain must extend it")


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


@router.get("/audit/head", responses=problem_responses(409))
def head(tenant: Admin, rt: RuntimeDep) -> HeadIO:
    """The chain's newest entry: position, hash and MAC. Keep it; verify against it later."""
    return HeadIO.of(custody.audit_head(rt, tenant.id))


def _verified(rt: RuntimeDep, tenant_id: str, since: AuditHead | None) -> VerifyOut:
    r = custody.audit_verify(rt, tenant_id, since)
    return VerifyOut(
        ok=r.ok,
        entries=r.entries,
        problems=list(r.problems),
        authenticated=r.authenticated,
        since=r.since,
        notes=list(r.notes),
    )


@router.get("/audit/verify")
def verify(tenant: Admin, rt: RuntimeDep) -> VerifyOut:
    """Walk the chain and check every MAC; names each entry altered, removed or reordered."""
    return _verified(rt, tenant.id, None)


@router.post("/audit/verify")
def verify_since(body: VerifyIn, tenant: Admin, rt: RuntimeDep) -> VerifyOut:
    """As GET, and (given ``since``) prove the chain still extends a head you saved:
    names a truncation or a rewrite."""
    return _verified(rt, tenant.id, body.since.head() if body.since else None)


class ErasureIn(StrictBody):
    """Whom to erase: a display name, or the subject id you attached."""

    name: str | None = Field(None, min_length=1, max_length=64)
    subject: str | None = Field(None, pattern=r"^[A-Za-z0-9._:@-]{1,128}$")
    confirm: str = Field(description='must be "erase": erasure is irreversible')


class ErasedFromIO(StrictBody):
    meeting: str = Field(max_length=64)
    participant: str = Field(max_length=64)
    audio_segments: int = Field(ge=0)
    transcript_segments: int = Field(ge=0)
    keys_shredded: bool


class ReceiptIO(StrictBody):
    """An erasure receipt, as ``POST /v1/participants/erase`` returned it."""

    tenant: str = Field(max_length=64)
    subject: str = Field(pattern=r"^(name|subject):.{1,128}$")
    erased_at: float
    meetings: list[ErasedFromIO] = Field(max_length=100_000)
    key_version: int | None = Field(ge=1)
    audit_head: HeadIO | None
    mac: str = Field(pattern=r"^$|^[a-z][a-z0-9_-]*:v[1-9][0-9]*:[A-Za-z0-9+/=]{1,400}$")


class ReceiptCheck(BaseModel):
    ok: bool
    problems: list[str]
    notes: list[str] = []


@router.post("/participants/erase", responses=problem_responses(400, 403))
def erase_participant(body: ErasureIn, tenant: Admin, rt: RuntimeDep) -> ReceiptIO:
    """Erase one person from every meeting: their data keys destroyed, their content
    deleted, the tenant key rotated and retired; everyone else's content stays readable.
    Returns the erasure receipt (keep it; POST it to ``/v1/audit/receipts/verify``)."""
    if body.confirm != "erase":
        raise InvalidInput('erasure is irreversible: send confirm = "erase"')
    receipt = rights.erase_participant(rt, tenant.id, body.name, body.subject)
    return ReceiptIO.model_validate_json(receipt.to_json())


@router.post("/audit/receipts/verify", responses=problem_responses(400))
def verify_receipt(receipt: ReceiptIO, tenant: Admin, rt: RuntimeDep) -> ReceiptCheck:
    """Check an erasure receipt: its MAC with your key, and the audit chain's record of it."""
    if receipt.tenant != tenant.id:
        raise InvalidInput("this receipt is not of your tenant")
    r = rights.verify_receipt(rt, receipt.model_dump_json())
    return ReceiptCheck(ok=r.ok, problems=list(r.problems), notes=list(r.notes))
