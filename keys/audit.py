"""The key-use audit log: one keyed hash chain per tenant.

Each entry records who used which tenant key version, on which meeting (and participant), for
which purpose, and how it ended. Entry ``n`` stores ``prev`` (the hash of entry ``n - 1``), its
own ``hash = SHA-256(prev || canonical JSON of the entry without hash and MAC)``, and a
``mac`` over its position and hash, made by the tenant's key provider with a key only the
customer's provider holds (the local keyring's MAC key, or Transit's ``hmac`` on the tenant's
key). Because each hash covers every entry before it, the newest valid MAC vouches for the
whole chain: without the customer's key nobody can extend it, rewrite it (hashes recomputed
or not), or strip its MACs unnoticed.

What a keyed chain cannot show alone is that entries were cut off the end: a prefix of a
valid chain is a valid chain. So the customer keeps **heads** (:class:`AuditHead`: position,
hash and MAC of the newest entry, taken with ``audit head``) outside sealscribe, and
:func:`verify` with ``since=`` proves the chain still extends the saved head. A chain cut
back to before the tenant's last key rotation is caught even without a head, because its
newest MAC is then under a retired key version.

Chains from before keyed audit (entries without ``mac``) migrate by themselves: the first
keyed entry covers them all through the hash chain.

Storage is behind :class:`AuditStore` and MACs behind :class:`Authenticator` (a key
provider), so this module stays free of Redis and of any KMS.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from keys.errors import InvalidKeyInput, KeyConflict
from keys.types import encode_fields

__all__ = [
    "AuditEntry",
    "AuditHead",
    "AuditLog",
    "AuditStore",
    "Authenticator",
    "VerifyReport",
    "genesis_hash",
    "mac_input",
    "verify",
]


def genesis_hash(tenant_id: str) -> str:
    """The ``prev`` of a tenant's first entry."""
    return hashlib.sha256(b"sealscribe.audit.v1\x00" + tenant_id.encode()).hexdigest()


def mac_input(tenant_id: str, seq: int, entry_hash: str) -> bytes:
    """What an entry's MAC covers: the tenant, the entry's position and its hash (which
    covers the entry's content and, through ``prev``, every entry before it)."""
    return encode_fields(b"sealscribe.audit.mac.v1", tenant_id, seq, entry_hash)


class Authenticator(Protocol):
    """Makes and checks MACs with a key the tenant's provider holds (a key provider)."""

    def mac(self, tenant_id: str, data: bytes) -> str:
        """A MAC of ``data`` as ``PROVIDER:vVERSION:BASE64``."""
        ...

    def check_macs(self, tenant_id: str, items: Sequence[tuple[bytes, str]]) -> list[bool | None]:
        """For each (data, mac): True if it is right, False if not, None if it cannot be
        checked here (its key version is retired, or another provider made it)."""
        ...


#: fields added after the first chains were written: left out of the hash while unset
_LATER_FIELDS = ("participant", "segment")


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
    #: the participant a per-participant data key belongs to (None: the meeting's)
    participant: str | None = None
    #: the audio segment an entry is about (a purge), as its id ``PARTICIPANT.SEQ``
    segment: str | None = None
    #: the provider's MAC of (tenant, seq, hash); "" on entries from before keyed audit
    mac: str = ""

    def _body(self) -> bytes:
        body = asdict(self)
        del body["hash"], body["mac"]
        for name in _LATER_FIELDS:  # entries from before these existed hash as they did
            if body[name] is None:
                del body[name]
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def compute_hash(self) -> str:
        return hashlib.sha256(self.prev.encode() + self._body()).hexdigest()

    def mac_input(self) -> bytes:
        return mac_input(self.tenant, self.seq, self.hash)

    def to_json(self) -> str:
        doc = asdict(self)
        for name in _LATER_FIELDS:
            if doc[name] is None:
                del doc[name]
        if not doc["mac"]:
            del doc["mac"]
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> AuditEntry:
        doc: dict[str, Any] = json.loads(raw)
        return cls(**doc)


@dataclass(frozen=True)
class AuditHead:
    """Where a tenant's chain stood: the newest entry's position, hash and MAC. The customer
    keeps it outside sealscribe and later proves the chain still extends it."""

    tenant: str
    #: entries in the chain (the head is entry ``count - 1``)
    count: int
    hash: str
    mac: str
    #: when the head entry was written, and when this head was taken
    at: float
    taken: float

    @property
    def seq(self) -> int:
        return self.count - 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, raw: str | bytes) -> AuditHead:
        """A head as ``audit head`` writes it, or as the ``audit.head`` webhook sends it (its
        ``data``, with ``tenant_id`` and no ``taken``)."""
        try:
            doc = json.loads(raw)
            head = cls(
                tenant=str(doc["tenant"] if "tenant" in doc else doc["tenant_id"]),
                count=int(doc["count"]),
                hash=str(doc["hash"]),
                mac=str(doc["mac"]),
                at=float(doc["at"]),
                taken=float(doc.get("taken", doc["at"])),
            )
        except (ValueError, TypeError, KeyError):
            raise InvalidKeyInput(
                "not an audit head: expected the JSON written by 'sealscribe audit head'"
            ) from None
        if head.count < 1:
            raise InvalidKeyInput("an audit head names at least one entry")
        return head

    @classmethod
    def of(cls, entry: AuditEntry, taken: float) -> AuditHead:
        return cls(entry.tenant, entry.seq + 1, entry.hash, entry.mac, entry.at, taken)


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
    """Appends entries to a tenant's chain, each MACed by ``authenticator`` (None: an
    unkeyed chain, as before keyed audit). Safe with concurrent writers (it retries)."""

    def __init__(
        self,
        store: AuditStore,
        clock: Callable[[], float] = time.time,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.store = store
        self._clock = clock
        self.authenticator = authenticator

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
        participant: str | None = None,
        segment: str | None = None,
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
                participant=participant,
                segment=segment,
            )
            entry = self._sealed(entry)
            if self.store.audit_append(tenant_id, entry):
                return entry
        raise KeyConflict("the audit log is too busy to append to; try again")

    def _sealed(self, entry: AuditEntry) -> AuditEntry:
        entry = _replace(entry, hash=entry.compute_hash())
        if self.authenticator is None:
            return entry
        try:
            tag = self.authenticator.mac(entry.tenant, entry.mac_input())
        except Exception:
            # The provider cannot MAC right now (KMS unreachable, key or tenant deleted):
            # the entry is still written, unkeyed, and verify names it, since a key use must
            # never go unrecorded.
            return entry
        return _replace(entry, mac=tag)

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

    def head(self, tenant_id: str) -> AuditHead | None:
        """The chain's newest entry as a head to keep; None for an empty chain."""
        newest = self.entries(tenant_id, -1, -1)
        return AuditHead.of(newest[0], round(self._clock(), 6)) if newest else None


def _replace(entry: AuditEntry, **changes: Any) -> AuditEntry:
    return AuditEntry(**{**asdict(entry), **changes})


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    entries: int
    problems: tuple[str, ...]
    #: entries covered by a MAC that was checked (the newest such one and all before it)
    authenticated: int = 0
    #: the saved head the chain was checked against (its entry count), if any
    since: int | None = None
    notes: tuple[str, ...] = field(default=())


def verify(
    tenant_id: str,
    raw_entries: Sequence[str | bytes],
    head: tuple[int, str | None],
    authenticator: Authenticator | None = None,
    since: AuditHead | None = None,
    newest: int | None = None,
) -> VerifyReport:
    """Check a tenant's chain end to end and name each entry that was tampered with.

    With ``authenticator`` every MAC is checked (with ``newest``, only the newest that many,
    which vouch for the rest: the same verdict, without naming which older entry was
    rewritten) and the chain must be keyed; with ``since`` (a head the customer saved) the
    chain must still contain that very entry."""
    problems: list[str] = []
    entries: list[AuditEntry | None] = []
    prev_hash = genesis_hash(tenant_id)
    expected_seq = 0
    for pos, raw in enumerate(raw_entries):
        try:
            entry = AuditEntry.from_json(raw)
        except (ValueError, TypeError):
            problems.append(f"the entry at position {pos} is unreadable (edited)")
            entries.append(None)
            expected_seq += 1
            continue
        entries.append(entry)
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
    authenticated, notes = 0, list[str]()
    if authenticator is not None:
        authenticated = _check_macs(tenant_id, entries, authenticator, problems, notes, newest)
    if since is not None:
        _check_since(tenant_id, entries, since, authenticator, problems)
    return VerifyReport(
        not problems,
        len(raw_entries),
        tuple(problems),
        authenticated,
        None if since is None else since.count,
        tuple(notes),
    )


def _check_macs(
    tenant_id: str,
    entries: Sequence[AuditEntry | None],
    authenticator: Authenticator,
    problems: list[str],
    notes: list[str],
    newest: int | None = None,
) -> int:
    """Check every entry's MAC, or with ``newest`` only the newest ``newest`` keyed ones
    (with the hash chain intact, a valid MAC vouches for every entry before it; all of
    them are checked when none of those can be); returns how many entries the newest
    checked MAC covers."""
    keyed = [e for e in entries if e is not None and e.mac and e.tenant == tenant_id]
    checked = keyed
    verdicts = None
    if newest is not None and len(keyed) > newest:
        checked = keyed[-newest:]
        verdicts = authenticator.check_macs(tenant_id, [(e.mac_input(), e.mac) for e in checked])
        if not any(v is True for v in verdicts):
            checked, verdicts = keyed, None
    if verdicts is None:
        verdicts = authenticator.check_macs(tenant_id, [(e.mac_input(), e.mac) for e in checked])
    newest_checked: AuditEntry | None = None
    unchecked = 0
    for entry, good in zip(checked, verdicts, strict=True):
        if good is False:
            problems.append(f"entry {entry.seq} has a MAC that is not the tenant key's (rewritten)")
        elif good is None:
            unchecked += 1
        else:
            newest_checked = entry
    first_keyed = keyed[0].seq if keyed else None
    legacy = sum(
        1
        for e in entries
        if e is not None and not e.mac and (first_keyed is None or e.seq < first_keyed)
    )
    unkeyed = [
        e.seq
        for e in entries
        if e is not None and not e.mac and first_keyed is not None and e.seq > first_keyed
    ]
    if entries and first_keyed is None:
        problems.append(
            "no entry carries a MAC: the chain is from before keyed audit (run "
            "'sealscribe audit migrate') or its MACs were stripped"
        )
    for seq in unkeyed:
        problems.append(
            f"entry {seq} carries no MAC (rewritten, or written while the key provider "
            "could not make one)"
        )
    if legacy and first_keyed is not None:
        notes.append(
            f"{legacy} entries from before keyed audit are covered by the MAC of entry "
            f"{first_keyed} and those after it"
        )
    if unchecked:
        notes.append(
            f"{unchecked} MACs are under retired key versions and were checked through "
            "the newer entries that cover them"
        )
    if newest_checked is None:
        if keyed and not any(v is False for v in verdicts):
            problems.append(
                "no MAC in the chain can be checked with the tenant's live key versions: "
                "the chain was cut back to before a key rotation"
            )
        return 0
    if verdicts and verdicts[-1] is None:
        problems.append(
            f"the newest entries' MACs (after entry {newest_checked.seq}) are under retired "
            "key versions: the chain was cut back to before a key rotation, or rewritten"
        )
    return newest_checked.seq + 1


def _check_since(
    tenant_id: str,
    entries: Sequence[AuditEntry | None],
    since: AuditHead,
    authenticator: Authenticator | None,
    problems: list[str],
) -> None:
    if since.tenant != tenant_id:
        problems.append(f"the saved head belongs to tenant {since.tenant}, not {tenant_id}")
        return
    if authenticator is not None and since.mac:
        [good] = authenticator.check_macs(
            tenant_id, [(mac_input(tenant_id, since.seq, since.hash), since.mac)]
        )
        if good is False:
            problems.append(
                "the saved head's MAC is not the tenant key's: the head file was altered"
            )
    at = entries[since.seq] if since.seq < len(entries) else None
    if since.seq >= len(entries):
        problems.append(
            f"truncated: the chain has {len(entries)} entries, but the saved head is entry "
            f"{since.seq} (taken {_utc(since.taken)})"
        )
    elif at is None or at.seq != since.seq or at.hash != since.hash:
        problems.append(
            f"rewritten: entry {since.seq} is not the one in the saved head (taken "
            f"{_utc(since.taken)})"
        )


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
