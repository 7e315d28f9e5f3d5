"""Key custody and audit services for a tenant: status, rotate, retire, revoke, import,
and the audit log (show, head, verify, migrate)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from keys.audit import AuditEntry, AuditHead, VerifyReport, verify
from keys.errors import KeyRevoked
from keys.service import RotationReport
from keys.types import KeyStatus
from pipeline import faults
from pipeline.config import KEY_PROVIDERS
from pipeline.errors import Conflict, InvalidInput
from pipeline.runtime import Runtime
from pipeline.services import webhooks

__all__ = [
    "KeyReport",
    "audit_head",
    "audit_migrate",
    "audit_show",
    "audit_verify",
    "import_key",
    "key_status",
    "migrate_keys",
    "retire_keys",
    "revoke_keys",
    "rotate_keys",
]


@dataclass(frozen=True)
class KeyReport:
    status: KeyStatus
    #: how many stored data keys are wrapped under each tenant key version
    wrapped_by_version: dict[int, int]


def key_status(rt: Runtime, tenant_id: str) -> KeyReport:
    tenant = rt.store.tenants.get(tenant_id)
    status = rt.keys.status(tenant_id)
    if tenant.revoked and not status.revoked:  # e.g. a KMS key kept, but unusable
        status = dataclasses.replace(status, revoked=True)
    return KeyReport(status, rt.keys.wrapped_versions(tenant_id))


def rotate_keys(rt: Runtime, tenant_id: str) -> RotationReport:
    """New primary version and every data key rewrapped (run again to resume)."""
    rt.store.tenants.get(tenant_id)
    report = rt.keys.rotate(tenant_id, rt.actor)
    _rotated(rt, tenant_id, report)
    return report


def _rotated(rt: Runtime, tenant_id: str, report: RotationReport) -> None:
    webhooks.key_changed(
        rt,
        tenant_id,
        "rotated",
        primary_version=report.primary_version,
        rewrapped=report.rewrapped,
    )


def retire_keys(rt: Runtime, tenant_id: str, below: int) -> int:
    rt.store.tenants.get(tenant_id)
    moved = rt.keys.retire_below(tenant_id, below, rt.actor)
    webhooks.key_changed(rt, tenant_id, "retired", below=below, rewrapped=moved)
    return moved


def revoke_keys(rt: Runtime, tenant_id: str) -> None:
    """Kill switch. The tenant is marked revoked here first, so capture and workers fail
    closed at once even if the KMS is slow to answer; then the key itself is revoked."""
    rt.store.tenants.get(tenant_id)
    rt.store.tenants.mark_revoked(tenant_id)
    try:
        rt.keys.revoke(tenant_id, rt.actor)
    finally:  # the tenant is told even if the KMS fails: capture already fails closed
        webhooks.key_changed(rt, tenant_id, "revoked")


def migrate_keys(rt: Runtime, tenant_id: str, to: str) -> RotationReport:
    """Move a tenant's key custody to provider ``to`` (``local`` or ``transit``).

    The tenant gets a key at ``to``, then every data key is unwrapped from the old provider
    and wrapped by the new one, in memory; content is never re-encrypted. Interrupted? Run
    it again: keys already moved are skipped, and every key stays readable throughout,
    because each is opened by the provider that wrapped it. The old provider's key is left
    to the customer to revoke."""
    tenant = rt.store.tenants.get(tenant_id)
    if tenant.revoked:
        raise KeyRevoked(f"the key of tenant {tenant_id} was revoked")
    if to not in KEY_PROVIDERS:
        raise InvalidInput(f"--to must be one of {', '.join(KEY_PROVIDERS)}")
    if to == "transit" and rt.settings.transit is None:
        raise InvalidInput("migrating to transit needs SEALSCRIBE_TRANSIT_ADDR and a token")
    rt.store.tenants.set_key_provider(tenant_id, to)
    version = rt.keys.create_tenant_key(tenant_id, rt.actor)
    rt.keys.audit.record(
        tenant_id, "migrate", actor=rt.actor, outcome=f"to-{to}", key_version=version
    )
    report = RotationReport(version, rt.keys.rewrap_pending(tenant_id, rt.actor))
    _rotated(rt, tenant_id, report)
    return report


def import_key(rt: Runtime, tenant_id: str, material: bytes) -> RotationReport:
    rt.store.tenants.get(tenant_id)
    report = rt.keys.import_key(tenant_id, material, rt.actor)
    _rotated(rt, tenant_id, report)
    return report


def audit_show(rt: Runtime, tenant_id: str, offset: int = 0, limit: int = 100) -> list[AuditEntry]:
    rt.store.tenants.get(tenant_id)
    if limit <= 0:
        return []
    return rt.keys.audit.entries(tenant_id, offset, offset + limit - 1)


#: the newest MACs a quick check checks
QUICK_MACS = 200


def audit_head(rt: Runtime, tenant_id: str) -> AuditHead:
    """The chain's newest entry as a head for the customer to keep outside sealscribe;
    :class:`Conflict` while the chain is empty."""
    rt.store.tenants.get(tenant_id)
    head = rt.keys.audit.head(tenant_id)
    if head is None:
        raise Conflict(f"tenant {tenant_id} has no audit entries yet")
    return head


def audit_verify(
    rt: Runtime, tenant_id: str, since: AuditHead | None = None, quick: bool = False
) -> VerifyReport:
    """Check the chain: hashes, every MAC with the tenant's provider and, given ``since``
    (a head the customer saved), that the chain still extends it. ``quick`` checks only
    the newest MACs, which vouch for the rest (one KMS request, not one per 200 entries):
    the same verdict, for the checks that run with every transcript and report."""
    rt.store.tenants.get(tenant_id)
    head, entries = rt.store.audit.audit_snapshot(tenant_id)
    authenticator = None if faults.on("audit-unkeyed") else rt.keys.provider
    if faults.on("audit-ignores-head"):
        since = None
    return verify(tenant_id, entries, head, authenticator, since, QUICK_MACS if quick else None)


def audit_migrate(rt: Runtime, tenant_id: str) -> AuditEntry:
    """Key a chain from before keyed audit now: one MACed entry covers every entry before
    it (any key use would do the same, later)."""
    rt.store.tenants.get(tenant_id)
    return rt.keys.audit.record(tenant_id, "audit-keyed", actor=rt.actor)
