"""The key-use audit log: one hash chain per tenant.

Each entry records who used which tenant key version, on which meeting, for which purpose,
and how it ended. Entry ``n`` stores ``prev`` (the hash of entry ``n - 1``) and its own
``hash = SHA-256(prev || canonical JSON of the entry without its hash)``; the store also
keeps the chain's head (entry count and last hash). :func:`verify` therefore detects an
edited entry, an inserted one, a deleted one (also at the end), and says which.

Storage is behind :class:`AuditStore` so this module stays free of Redis; the pipeline's
Redis store implements it with an atomic compare-and-append.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from keys.errors import KeyConflict

__all__ = ["AuditEntry", "AuditLog", "AuditStore", "VerifyReport", "genesis_hash", "verify"]


def genesis_hash(tenant_id: str) -> str:
    """The ``prev`` of a tenant's first entry."""
    return hashlib.sha256(b"sealscribe.audit.v1\x00" + tenant_id.encode()).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: float
    tenant: str
    action: str  # wrap, unwrap, rewrap, create, rotate, import, retire, revoke, shred, erase
    outcome: str  # "ok", or the name of the error that stopped it
    actor: str
    meeting: str | None = None
    purpose: str | None = None
    key_version: int | None = None
    prev: str = ""
    hash: str = ""

    def _body(self) -> bytes:
        body = asdict(self)
        del body["hash"]
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def compute_hash(self) -> str:
        return hashlib.sha256(self.prev.encode() + self._body()).hexdigest()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> AuditEntry:
        doc: dict[str, Any] = json.loads(raw)
        return cls(**doc)


class AuditStore(Protocol):
    def audit_head(self, tenant_id: str) -> tuple[int, str | None]:
        """(number of entries, hash of the last entry or None)."""
        ...

    def audit_append(self, tenant_id: str, entry: AuditEntry) -> bool:
        """Append iff the chain still has exactly ``entry.seq`` entries; atomically."""
        ...

    def audit_entries(self, tenant_id: str, start: int = 0, stop: int = -1) -> list[str]:
        """Raw JSON entries at positions ``start..stop`` (inclusive, -1 for the end)."""
        ...


class AuditLog:
    """Appends entries to a tenant's chain. Safe with concurrent writers (it retries)."""

    def __init__(self, store: AuditStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    def record(
        self,
        tenant_id: str,
        action: str,
        *,
        actor: str,
        outcome: str = "ok",
        meeting: str | None = None,
        purpose: str | None = None,
        key_version: int | None = None,
    ) -> AuditEntry:
        for _ in range(100):
            count, last = self.store.audit_head(tenant_id)
            entry = AuditEntry(
                seq=count,
                at=round(self._clock(), 6),
                tenant=tenant_id,
                action=action,
                outcome=outcome,
                actor=actor,
                meeting=meeting,
                purpose=purpose,
                key_version=key_version,
                prev=last or genesis_hash(tenant_id),
            )
            entry = _with_hash(entry)
            if self.store.audit_append(tenant_id, entry):
                return entry
        raise KeyConflict("the audit log is too busy to append to; try again")

    def entries(self, tenant_id: str, start: int = 0, stop: int = -1) -> list[AuditEntry]:
        """The readable entries in that range; a mangled one is left out (``verify``
        names it)."""
        out = []
        for raw in self.store.audit_entries(tenant_id, start, stop):
            try:
                out.append(AuditEntry.from_json(raw))
            except (ValueError, TypeError):
                continue
        return out


def _with_hash(entry: AuditEntry) -> AuditEntry:
    return AuditEntry(**{**asdict(entry), "hash": entry.compute_hash()})


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    entries: int
    problems: tuple[str, ...]


def verify(
    tenant_id: str, raw_entries: Sequence[str | bytes], head: tuple[int, str | None]
) -> VerifyReport:
    """Check a tenant's chain end to end and name each entry that was tampered with."""
    problems: list[str] = []
    prev_hash = genesis_hash(tenant_id)
    expected_seq = 0
    for pos, raw in enumerate(raw_entries):
        try:
            entry = AuditEntry.from_json(raw)
        except (ValueError, TypeError):
            problems.append(f"the entry at position {pos} is unreadable (edited)")
            expected_seq += 1
            continue
        if entry.tenant != tenant_id:
            problems.append(f"entry {entry.seq} belongs to another tenant (inserted)")
            continue
        if entry.compute_hash() != entry.hash:
            problems.append(f"entry {entry.seq} was edited")
        if entry.seq < expected_seq:
            problems.append(
                f"entry {entry.seq} at position {pos} was inserted (expected entry {expected_seq})"
            )
            continue
        if entry.seq > expected_seq:
            missing = (
                f"entry {expected_seq}"
                if entry.seq == expected_seq + 1
                else f"entries {expected_seq} to {entry.seq - 1}"
            )
            problems.append(f"{missing} deleted")
        elif entry.prev != prev_hash:
            problems.append(
                f"entry {entry.seq} does not follow entry {entry.seq - 1}: "
                "an entry before it was edited or replaced"
            )
        prev_hash = entry.hash
        expected_seq = entry.seq + 1
    count, last = head
    if count > expected_seq:
        problems.append(
            f"the last {count - expected_seq} entries (from entry {expected_seq}) were deleted"
        )
    elif count < expected_seq:
        problems.append(
            f"the chain has {expected_seq - count} more entries than its head records (inserted)"
        )
    elif count and last != prev_hash:
        problems.append("the last entry does not match the chain's recorded head (edited)")
    return VerifyReport(not problems, len(raw_entries), tuple(problems))
