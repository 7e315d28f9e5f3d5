"""Data-subject rights: a tenant exports everything it owns or erases itself for good, and
erases one person (a participant, by name or subject id) with an authenticated receipt."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from keys.audit import AuditHead
from keys.errors import InvalidKeyInput, KeyRevoked
from keys.types import encode_fields
from pipeline import faults, ids
from pipeline.errors import OURS, InvalidInput, NotFound
from pipeline.formats import render
from pipeline.models import speakers
from pipeline.runtime import Runtime
from pipeline.services import custody
from pipeline.services.meetings import finish_shreds, subject_id
from pipeline.services.records import verify_meeting
from pipeline.services.transcripts import read_transcript

__all__ = [
    "ErasedFrom",
    "ErasureReceipt",
    "ErasureReport",
    "ExportReport",
    "ReceiptReport",
    "erase_participant",
    "erase_tenant",
    "export_tenant",
    "verify_receipt",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportReport:
    path: str
    meetings: int
    transcript_segments: int
    audit_entries: int


@dataclass(frozen=True)
class ErasureReport:
    tenant_id: str
    meetings: int


def export_tenant(rt: Runtime, tenant_id: str, out: Path) -> ExportReport:
    """Write one ZIP archive of everything the tenant owns to ``out``: per meeting its
    metadata and its transcript as JSON and WebVTT (opened with purpose ``deliver``), and
    the audit log (JSON lines).

    The archive holds the tenant's transcripts in the clear, because handing them over is
    the point; it is written only to ``out`` (via ``out``.part in the same directory, then
    renamed), never to a temporary directory, and readable by its owner only."""
    tenant = rt.store.tenants.get(tenant_id)
    if tenant.revoked:
        raise KeyRevoked(f"the key of tenant {tenant_id} was revoked: nothing can be opened")
    out = Path(out)
    if out.exists():
        raise InvalidInput(f"{out} already exists; choose a new file name")
    if not out.parent.is_dir():
        raise InvalidInput(f"the directory {out.parent} does not exist")
    part = out.with_name(out.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            counts = write_export(rt, tenant_id, fh)
        os.replace(part, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise
    return ExportReport(str(out), *counts)


def write_export(rt: Runtime, tenant_id: str, fh: BinaryIO) -> tuple[int, int, int]:
    """The export archive written to ``fh`` (a file, or memory for the API); returns the
    numbers of meetings, transcript segments and audit entries in it."""
    tenant = rt.store.tenants.get(tenant_id)
    if tenant.revoked:
        raise KeyRevoked(f"the key of tenant {tenant_id} was revoked: nothing can be opened")
    segments = 0
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
        meetings = rt.store.meetings.list(tenant_id)
        zf.writestr("tenant.json", json.dumps(asdict(tenant), indent=2))
        chain = custody.audit_verify(rt, tenant_id, quick=True)  # once, for every meeting
        logged = rt.keys.audit.entries(tenant_id)
        for m in meetings:
            transcript = read_transcript(rt, m.id, tenant_id)
            segments += len(transcript)
            meta = {**asdict(m), "opted_out": sorted(m.opted_out), "opted_in": sorted(m.opted_in)}
            zf.writestr(f"meetings/{m.id}/meeting.json", json.dumps(meta, indent=2))
            zf.writestr(f"meetings/{m.id}/transcript.json", render(transcript, "json"))
            zf.writestr(f"meetings/{m.id}/transcript.vtt", render(transcript, "vtt"))
            record = verify_meeting(rt, m.id, tenant_id, chain, logged)
            zf.writestr(f"meetings/{m.id}/manifest.json", json.dumps(asdict(record), indent=2))
        entries = rt.keys.audit.entries(tenant_id)  # again: the export's own key uses included
        zf.writestr("audit.jsonl", "".join(e.to_json() + "\n" for e in entries))
    return len(meetings), segments, len(entries)


def erase_tenant(rt: Runtime, tenant_id: str) -> ErasureReport:
    """Crypto-shred every data key, delete every record, revoke the tenant key, and leave
    only an audit entry that the erase happened. Irreversible."""
    rt.store.tenants.get(tenant_id)
    rt.store.tenants.mark_revoked(tenant_id)  # capture and workers stop at once
    meetings = rt.store.meetings.list(tenant_id)
    for m in meetings:
        rt.store.meetings.shred_keys(m.id)
        rt.store.meetings.delete(m)
    with contextlib.suppress(KeyRevoked):
        rt.keys.provider.revoke(tenant_id)
    delete = getattr(rt.keys.provider, "delete", None)
    if delete is not None:
        delete(tenant_id)  # the local keyring's file goes too
    for endpoint in rt.store.webhooks.list(tenant_id):  # its outbox and log go with it
        rt.store.webhooks.delete(endpoint)
    rt.store.tenants.delete(tenant_id)
    rt.store.quotas.forget_tenant(tenant_id)
    rt.store.audit.audit_reset(tenant_id)
    rt.keys.audit.record(tenant_id, "erase", actor=rt.actor, outcome=f"{len(meetings)}-meetings")
    return ErasureReport(tenant_id, len(meetings))


# -- erasure of one person ---------------------------------------------------------------


@dataclass(frozen=True)
class ErasedFrom:
    meeting: str
    participant: str
    audio_segments: int
    transcript_segments: int
    #: their content had its own data keys, now destroyed (False: content from before
    #: per-participant keys, sealed under the meeting's shared key: deleted, not shredded)
    keys_shredded: bool


@dataclass(frozen=True)
class ErasureReceipt:
    """What an erasure did, MACed with the tenant's key: ``audit verify-receipt`` detects
    any change to it."""

    tenant: str
    #: ``name:DISPLAY NAME`` or ``subject:ID``: whom the request named
    subject: str
    erased_at: float
    meetings: tuple[ErasedFrom, ...]
    #: the tenant key's primary version after rotation and retirement (None: still to do,
    #: the beat finishes it)
    key_version: int | None
    #: the audit chain's head after the erasure (position, hash, MAC)
    audit_head: AuditHead | None
    mac: str = ""

    def mac_input(self) -> bytes:
        body = to_jsonable_dict(self)
        del body["mac"]
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return encode_fields(b"sealscribe.receipt.v1", self.tenant, canonical)

    def to_json(self) -> str:
        return json.dumps(to_jsonable_dict(self), sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ErasureReceipt:
        try:
            doc = json.loads(raw)
            head = doc["audit_head"]
            return cls(
                tenant=str(doc["tenant"]),
                subject=str(doc["subject"]),
                erased_at=float(doc["erased_at"]),
                meetings=tuple(
                    ErasedFrom(
                        str(m["meeting"]),
                        str(m["participant"]),
                        int(m["audio_segments"]),
                        int(m["transcript_segments"]),
                        bool(m["keys_shredded"]),
                    )
                    for m in doc["meetings"]
                ),
                key_version=None if doc["key_version"] is None else int(doc["key_version"]),
                audit_head=None if head is None else AuditHead.from_json(json.dumps(head)),
                mac=str(doc["mac"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError, InvalidKeyInput):
            raise InvalidInput(
                "not an erasure receipt: expected the JSON written by 'participant erase'"
            ) from None


def to_jsonable_dict(receipt: ErasureReceipt) -> dict[str, Any]:
    doc = asdict(receipt)
    doc["meetings"] = [asdict(m) for m in receipt.meetings]
    return doc


def erase_participant(
    rt: Runtime, tenant_id: str, name: str | None = None, subject: str | None = None
) -> ErasureReceipt:
    """Erase one person from every meeting of the tenant (GDPR Article 17): by display
    name, or by the subject id the tenant attached to them. Their own data keys are
    destroyed, their content deleted, and the tenant key rotated and retired (so a Redis
    backup from before opens nothing of theirs); everyone else's content stays readable.
    What they said at once with others in a mixed room (a speaker group such as
    ``Ann + Bob``) carries their voice, so it is erased with them. Returns an
    authenticated receipt. Irreversible."""
    if (name is None) == (subject is None):
        raise InvalidInput("name the participant, or give --subject, not both")
    who = ids.participant_id(name) if name is not None else subject_id(subject or "")
    tenant = rt.store.tenants.get(tenant_id)
    if tenant.revoked:
        raise KeyRevoked(f"the key of tenant {tenant_id} was revoked: nothing can be opened")
    targets = []
    for meeting in rt.store.meetings.list(tenant_id):
        present = rt.store.meetings.participants(meeting.id)
        if name is not None:
            people = {who}
        else:
            people = {p for p, s in rt.store.meetings.subjects(meeting.id).items() if s == who}
        # and what they said at once with others in a mixed room (a speaker group)
        groups = {p for p in present if len(speakers(p)) > 1 and people & set(speakers(p))}
        targets += [(meeting, p) for p in sorted((people & present) | groups)]
    if not targets:  # (the name is not echoed: it may be personal data)
        raise NotFound("nobody of that name or subject id is in this tenant's meetings")
    keep_keys = faults.on("erase-keeps-keys")
    erased = []
    for meeting, participant in targets:
        audio, text, own = rt.store.meetings.erase_participant(meeting, participant, keep_keys)
        bot = rt.store.bots.get(meeting.id)  # the bot's list of who is (or was last) present
        if bot is not None and participant in bot.participants:
            rt.store.bots.set_participants(
                meeting.id, [p for p in bot.participants if p != participant]
            )
        rt.keys.audit.record(
            tenant_id,
            "participant-erase",
            actor=rt.actor,
            outcome=f"{audio}-audio-{text}-transcripts",
            meeting=meeting.id,
            participant=participant,
        )
        erased.append(ErasedFrom(meeting.id, participant, audio, text, own and not keep_keys))
    version = None
    if targets and not keep_keys:
        try:
            finish_shreds(rt, tenant_id)
            version = rt.keys.status(tenant_id).primary_version
        except OURS as exc:  # the marks stay: the beat's shred-retry finishes it
            log.warning(
                "erasure in tenant %s: the key rotation is left to the retry (%s)",
                tenant_id,
                type(exc).__name__,
            )
    receipt = ErasureReceipt(
        tenant=tenant_id,
        subject=f"name:{who}" if name is not None else f"subject:{who}",
        erased_at=round(time.time(), 6),
        meetings=tuple(erased),
        key_version=version,
        audit_head=rt.keys.audit.head(tenant_id),
    )
    return dataclasses.replace(receipt, mac=rt.keys.provider.mac(tenant_id, receipt.mac_input()))


@dataclass(frozen=True)
class ReceiptReport:
    ok: bool
    receipt: ErasureReceipt
    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()


def verify_receipt(rt: Runtime, raw: bytes | str) -> ReceiptReport:
    """Check an erasure receipt: its MAC with the tenant's key, and that the keyed audit
    chain holds the erasures it lists up to its head (which also holds once the MAC's key
    version is retired)."""
    receipt = ErasureReceipt.from_json(raw)
    rt.store.tenants.get(receipt.tenant)
    if faults.on("receipt-unkeyed"):
        return ReceiptReport(True, receipt, ())
    problems, notes = [], []
    good = (
        rt.keys.provider.check_macs(receipt.tenant, [(receipt.mac_input(), receipt.mac)])[0]
        if receipt.mac
        else False
    )
    if good is False:
        problems.append("the receipt was changed after it was issued: its MAC does not match")
    elif good is None:
        if receipt.audit_head is None:
            problems.append("the receipt's MAC cannot be checked here and it names no audit head")
        notes.append(
            "the receipt's MAC is under a retired key version: it was checked against the "
            "keyed audit chain instead (meetings, participants and counts)"
        )
    chain = custody.audit_verify(rt, receipt.tenant, receipt.audit_head)
    if not chain.ok:
        problems += [f"audit chain: {p}" for p in chain.problems]
    if receipt.audit_head is not None:
        entries = rt.keys.audit.entries(receipt.tenant, 0, receipt.audit_head.seq)
        logged = Counter(
            (e.meeting, e.participant, e.outcome)
            for e in entries
            if e.action == "participant-erase" and e.at <= receipt.erased_at
        )
        for m in receipt.meetings:
            what = (
                m.meeting,
                m.participant,
                f"{m.audio_segments}-audio-{m.transcript_segments}-transcripts",
            )
            if logged[what] < 1:
                problems.append(
                    f"the audit chain records no erasure of {m.participant} in {m.meeting} "
                    "with these counts"
                )
            logged[what] -= 1
    elif receipt.meetings:
        problems.append("the receipt names no audit head")
    return ReceiptReport(not problems, receipt, tuple(problems), tuple(notes))
