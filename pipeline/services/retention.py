"""Retention: how long a tenant's content may live, and the purge that enforces it.

Redis TTLs do the enforcing: sealed audio expires after the tenant's audio TTL whether or
not a worker ever comes back, and sealed transcripts after the transcript TTL. The periodic
purge (a Celery beat task) cleans the indexes those keys leave behind and crypto-shreds
meetings with nothing left, so even their data keys do not outlive retention.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pipeline.errors import OURS, InvalidInput
from pipeline.models import Tenant
from pipeline.runtime import Runtime
from pipeline.services import webhooks
from pipeline.services.meetings import finish_shreds
from pipeline.store import schema
from pipeline.store.connection import as_str

__all__ = ["PurgeReport", "Retention", "purge_expired", "retention", "set_retention"]

log = logging.getLogger(__name__)

MAX_AUDIO_TTL = 7 * 24 * 3600
MAX_TRANSCRIPT_TTL = 10 * 365 * 24 * 3600


@dataclass(frozen=True)
class Retention:
    transcript_ttl: int
    audio_ttl: int


@dataclass(frozen=True)
class PurgeReport:
    meetings_shredded: int
    stale_index_entries: int


def retention(rt: Runtime, tenant: Tenant) -> Retention:
    return Retention(
        tenant.transcript_ttl or rt.settings.transcript_ttl,
        tenant.audio_ttl or rt.settings.audio_ttl,
    )


def set_retention(
    rt: Runtime, tenant_id: str, transcript_ttl: int | None = None, audio_ttl: int | None = None
) -> Retention:
    """Set a tenant's retention (seconds); applies to content written from now on."""
    for name, value, top in (
        ("transcript retention", transcript_ttl, MAX_TRANSCRIPT_TTL),
        ("audio wait", audio_ttl, MAX_AUDIO_TTL),
    ):
        if value is not None and not 1 <= value <= top:
            raise InvalidInput(f"{name} must be between 1 and {top} seconds, got {value}")
    rt.store.tenants.get(tenant_id)
    rt.store.tenants.set_retention(tenant_id, transcript_ttl, audio_ttl)
    return retention(rt, rt.store.tenants.get(tenant_id))


def purge_expired(rt: Runtime, now: float | None = None) -> PurgeReport:
    """Drop index entries of expired segments; crypto-shred meetings whose content has all
    expired (nothing pending, no transcript left, older than the transcript retention)."""
    now = time.time() if now is None else now
    r = rt.store.redis
    stale = 0
    for member in r.zrange(schema.PENDING, 0, -1):
        meeting_id, sid = schema.parse_pending_member(as_str(member))
        if not r.exists(schema.audio(meeting_id, sid)):
            # only the entry: a segment is listed just before its audio is stored, and
            # audio stored meanwhile must stay (its own task still transcribes it); the
            # meeting's own index is checked below
            rt.store.segments.unindex(meeting_id, sid)
            stale += 1
    shredded = 0
    for tenant in rt.store.tenants.list():
        keep = retention(rt, tenant)
        expired = []
        for meeting in rt.store.meetings.list(tenant.id):
            for index, key_of in (
                (schema.meeting_audio(meeting.id), schema.audio),
                (schema.meeting_transcript(meeting.id), schema.transcript),
            ):
                for raw in r.zrange(index, 0, -1):
                    if not r.exists(key_of(meeting.id, as_str(raw))):
                        r.zrem(index, as_str(raw))
                        stale += 1
            empty = not r.zcard(schema.meeting_audio(meeting.id)) and not r.zcard(
                schema.meeting_transcript(meeting.id)
            )
            if empty and meeting.created + keep.transcript_ttl <= now:
                expired.append(meeting)
        for meeting in expired:
            rt.store.meetings.shred(meeting)  # keys destroyed, marked for the rotation
            rt.keys.audit.record(
                tenant.id, "shred", actor=rt.actor, outcome="retention", meeting=meeting.id
            )
            rt.store.meetings.delete(meeting)
            webhooks.meeting_deleted(rt, meeting, reason="retention")
        if expired:
            webhooks.retention_purged(rt, tenant.id, len(expired))
            # As for a delete: old key versions go too, so backups cannot be opened. If the
            # KMS fails now, the marks stay and the beat's shred-retry finishes the job.
            try:
                finish_shreds(rt, tenant.id)
            except OURS as exc:
                log.warning(
                    "retention purge: the key rotation of tenant %s is left to the retry (%s)",
                    tenant.id,
                    type(exc).__name__,
                )
        shredded += len(expired)
    return PurgeReport(shredded, stale)
