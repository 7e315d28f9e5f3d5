"""Data-subject rights of a tenant: export everything it owns, or erase it for good."""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from keys.errors import KeyRevoked
from pipeline.errors import InvalidInput
from pipeline.formats import render
from pipeline.runtime import Runtime
from pipeline.services.transcripts import read_transcript

__all__ = ["ErasureReport", "ExportReport", "erase_tenant", "export_tenant"]


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
        for m in meetings:
            transcript = read_transcript(rt, m.id, tenant_id)
            segments += len(transcript)
            meta = {**asdict(m), "opted_out": sorted(m.opted_out)}
            zf.writestr(f"meetings/{m.id}/meeting.json", json.dumps(meta, indent=2))
            zf.writestr(f"meetings/{m.id}/transcript.json", render(transcript, "json"))
            zf.writestr(f"meetings/{m.id}/transcript.vtt", render(transcript, "vtt"))
        entries = rt.keys.audit.entries(tenant_id)
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
