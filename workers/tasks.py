"""Celery tasks. Arguments are ids; content exists only in this process's memory."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from celery.signals import worker_process_init

from keys.errors import InvalidSeal, KeyConflict, KeyRevoked, KeyUnavailable, UnknownKey
from keys.types import DataKey, KeyUse, Purpose
from pipeline import faults
from pipeline.config import get_settings
from pipeline.datakeys import data_key
from pipeline.errors import NotFound, StoreUnavailable
from pipeline.manifest import TRANSCRIBED, manifest_key, outcome_record
from pipeline.models import (
    AudioSegment,
    Meeting,
    SealedSegment,
    Tenant,
    TranscriptSegment,
    parse_segment_id,
)
from pipeline.queue import PURGE, SHRED, SHRED_RETRY, TRANSCRIBE
from pipeline.runtime import Runtime, default_actor
from pipeline.sealing import open_audio, seal_transcript
from pipeline.services.meetings import finish_shreds, retry_shreds
from pipeline.services.retention import purge_expired, retention
from pipeline.services.webhooks import segments_settled
from workers import metrics, packing
from workers.app import app
from workers.keycache import DataKeyCache
from workers.transcriber import Transcriber

log = logging.getLogger(__name__)

#: a task whose segment is in another worker's batch looks again after this many seconds
DEFER_S = 10
#: oldest pending segments a batch chooses among: under a backlog of many speakers, enough
#: to find several of one speaker to pack into a window (sizes only: one Redis round trip)
_LOOK = 256

_runtime: Runtime | None = None
_transcriber: Transcriber | None = None
_keys: DataKeyCache | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime.from_settings(get_settings(), default_actor("worker"))
    return _runtime


def transcriber() -> Transcriber:
    global _transcriber
    if _transcriber is None:
        _transcriber = Transcriber(
            get_settings(), cpu_threads=int(os.environ.get("SEALSCRIBE_CPU_THREADS", 0))
        )
    return _transcriber


def key_cache() -> DataKeyCache:
    global _keys
    if _keys is None:
        _keys = DataKeyCache(get_settings().key_cache_seconds)
    return _keys


def cached_data_key(rt: Runtime, meeting: Meeting, use: KeyUse, participant_id: str) -> DataKey:
    """The data key for ``use`` content of the participant (their own, or the meeting's for
    content from before per-participant keys), unwrapped (purpose transcribe) at most once
    per cache lifetime."""
    _, wrapped = rt.store.meetings.content_key(meeting.id, use, participant_id)

    def unwrap() -> DataKey:
        metrics.count_unwrap(Purpose.TRANSCRIBE)
        return data_key(rt, meeting, use, Purpose.TRANSCRIBE, participant_id)

    return key_cache().get(meeting.tenant_id, meeting.id, use, wrapped.to_str(), unwrap)


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    """Load the model when the worker process starts, not on its first segment."""
    transcriber().load()


def _purge(rt: Runtime, tenant_id: str, meeting_id: str, sid: str, reason: str) -> str:
    """Delete a segment's audio untranscribed; the keyed audit entry (naming the segment)
    is its manifest outcome, so no key need be opened to record it."""
    rt.store.segments.delete_audio(meeting_id, sid)
    rt.keys.audit.record(
        tenant_id,
        "purge",
        actor=rt.actor,
        outcome=reason,
        meeting=meeting_id,
        participant=parse_segment_id(sid)[0],
        segment=sid,
    )
    log.info("segment %s of meeting %s purged untranscribed: %s", sid, meeting_id, reason)
    metrics.count_purge(reason)
    return reason


@dataclass(frozen=True)
class _Job:
    tenant: Tenant
    meeting: Meeting
    sealed: SealedSegment
    audio: AudioSegment
    #: the participant's manifest MAC key, for the segment's outcome record
    record_key: bytes = field(repr=False)


def _prepare(rt: Runtime, meeting_id: str, sid: str) -> _Job | str:
    """Policy check (fail closed), unwrap, open in memory; or the outcome if it stops here."""
    try:
        meeting = rt.store.meetings.get(meeting_id)
    except NotFound:
        rt.store.segments.delete_audio(meeting_id, sid)
        metrics.count_purge("meeting-gone")
        return "meeting-gone"
    sealed = rt.store.segments.get_audio(meeting_id, sid)
    if sealed is None:
        if not rt.store.segments.forget(meeting_id, sid):
            return "already-done"  # transcribed or purged by another task
        log.warning(
            "segment %s of meeting %s waited longer than its audio TTL and expired "
            "untranscribed (raise SEALSCRIBE_AUDIO_TTL or add workers)",
            sid,
            meeting_id,
        )
        return _purge(rt, meeting.tenant_id, meeting_id, sid, "audio-expired")
    tenant = rt.store.tenants.get(meeting.tenant_id)
    meeting, tenant = faults.permitted(meeting, "worker-ignores-policy"), faults.unrevoked(tenant)
    if tenant.revoked:
        key_cache().forget_tenant(meeting.tenant_id)
        return _purge(rt, meeting.tenant_id, meeting_id, sid, "key-revoked")
    if not meeting.transcription:
        return _purge(rt, meeting.tenant_id, meeting_id, sid, "transcription-off")
    if not meeting.transcribes(sealed.participant_id):
        return _purge(rt, meeting.tenant_id, meeting_id, sid, "opted-out")
    try:
        audio_key = cached_data_key(rt, meeting, KeyUse.AUDIO, sealed.participant_id)
        audio = open_audio(audio_key, meeting.tenant_id, sealed)
        record_key = manifest_key(audio_key, meeting.tenant_id, meeting_id, sealed.participant_id)
        return _Job(tenant, meeting, sealed, audio, record_key)
    except KeyRevoked:
        return _purge(rt, meeting.tenant_id, meeting_id, sid, "key-revoked")
    except (InvalidSeal, NotFound, UnknownKey):
        return _purge(rt, meeting.tenant_id, meeting_id, sid, "failed-authentication")


def _finish(rt: Runtime, job: _Job, result: TranscriptSegment) -> str:
    """Check the policy once more (the switch may have flipped while we listened), then seal
    the transcript and, in the same transaction, delete the audio."""
    meeting_id, sid = job.meeting.id, job.sealed.segment_id
    meeting = faults.permitted(rt.store.meetings.get(meeting_id), "worker-ignores-policy")
    if not meeting.transcribes(job.sealed.participant_id):
        return _purge(rt, meeting.tenant_id, meeting_id, sid, "transcription-off")
    try:
        text_key = cached_data_key(rt, meeting, KeyUse.TRANSCRIPT, job.sealed.participant_id)
    except KeyRevoked:
        return _purge(rt, meeting.tenant_id, meeting_id, sid, "key-revoked")
    ttl = retention(rt, job.tenant).transcript_ttl
    outcome = outcome_record(job.record_key, job.sealed.seq, TRANSCRIBED, int(time.time()) + ttl)
    rt.store.segments.complete(
        seal_transcript(text_key, meeting.tenant_id, meeting_id, result),
        result.start_ms,
        ttl,
        None if faults.on("no-manifest") else outcome,
    )
    metrics.count_transcribed(job.audio.duration_ms / 1000)
    return "transcribed"


@app.task(
    name=TRANSCRIBE,
    bind=True,
    reject_on_worker_lost=True,
    autoretry_for=(StoreUnavailable, KeyUnavailable),
    dont_autoretry_for=(KeyRevoked,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)
def transcribe(self: Any, meeting_id: str, segment_id: str) -> str:
    """Transcribe one sealed audio segment (and, when batching, other pending ones of any
    meeting, up to SEALSCRIBE_BATCH windows; a participant's segments waiting together share
    a window of up to 28 s), seal each transcript, delete the audio.

    Idempotent: a redelivered task finds the audio gone and does nothing. A segment taken
    into another worker's batch is leased; its own task looks again every ``DEFER_S``
    seconds until that batch is done or, its worker dead, the lease lapses."""
    rt = runtime()
    batch = transcriber().batch_size
    # A segment taken into a batch stays reserved as long as an unacknowledged message would.
    lease = rt.settings.visibility_timeout
    ids = [(meeting_id, segment_id)]
    owner = f"{rt.actor}:{self.request.id}"
    if batch > 1 and not rt.store.segments.claim(meeting_id, segment_id, owner, lease):
        # in another worker's batch: look again soon (it is most likely done by then); if
        # that worker died, the lease lapses and this task takes the segment
        metrics.count_task("deferred")
        raise self.retry(countdown=min(lease, DEFER_S), exc=None, max_retries=None)
    try:
        prepared = {i: _prepare(rt, *i) for i in ids}
        # Fill up to `batch` windows with other pending segments, those of a speaker already
        # taken first (packed into that speaker's window). Under a backlog this task's own
        # segment is usually done already (batched by another task): claim again for the
        # room left. Nothing waits for company: only what is pending now is taken.
        for _ in range(3):
            more = _claim_more(rt, owner, lease, batch, prepared) if batch > 1 else []
            if not more:
                break
            ids += more
            prepared |= {i: _prepare(rt, *i) for i in more}
        jobs = [p for p in prepared.values() if isinstance(p, _Job)]
        with metrics.timed_model_call(sum(j.audio.duration_ms for j in jobs) / 1000):
            results = transcriber().transcribe_many(
                [(j.audio, j.meeting.language, j.meeting.translate) for j in jobs],
                [_speaker(j) for j in jobs],
            )
        outcomes = {
            (j.meeting.id, j.sealed.segment_id): _finish(rt, j, r)
            for j, r in zip(jobs, results, strict=True)
        }
    except BaseException:
        if batch > 1:  # the others' own tasks need not wait for the leases to lapse
            rt.store.segments.release(ids, owner)
        raise
    if len(ids) > 1:
        windows = packing.plan([_item(j) for j in jobs])
        log.info("transcribed a batch of %d segments in %d windows", len(outcomes), len(windows))
    del jobs, results
    own = prepared[(meeting_id, segment_id)]
    outcome = own if isinstance(own, str) else outcomes[(meeting_id, segment_id)]
    metrics.count_task(outcome)
    segments_settled(rt, (m for m, _ in ids))  # "transcript ready" once the last one settles
    return outcome


def _speaker(job: _Job) -> tuple[str, str, str]:
    """Who may share a packed window with this segment: the same participant of the same
    meeting of the same tenant, nobody else."""
    return (job.meeting.tenant_id, job.meeting.id, job.sealed.participant_id)


def _item(job: _Job) -> packing.Item:
    return packing.Item(_speaker(job), job.audio.duration_ms, job.audio.start_ms)


def _claim_more(
    rt: Runtime, owner: str, lease: int, windows: int, prepared: dict[tuple[str, str], _Job | str]
) -> list[tuple[str, str]]:
    """Lease the pending segments that best fill up to ``windows`` windows besides those
    already prepared, their durations estimated from their sealed sizes (unopened)."""
    # a meeting belongs to one tenant: (meeting, participant) is one speaker of one tenant
    taken = [
        packing.Item((p.meeting.id, p.sealed.participant_id), p.audio.duration_ms)
        for p in prepared.values()
        if isinstance(p, _Job)
    ]
    pending = [c for c in rt.store.segments.pending_sizes(_LOOK) if (c[0], c[1]) not in prepared]
    candidates = [
        packing.Item((meeting_id, parse_segment_id(sid)[0]), packing.estimate_ms(size))
        for meeting_id, sid, size in pending
    ]
    chosen = packing.choose(taken, candidates, windows)
    return rt.store.segments.claim_each([pending[k][:2] for k in chosen], owner, lease)


@app.task(
    name=PURGE, acks_late=True, autoretry_for=(StoreUnavailable,), retry_backoff=True, max_retries=3
)
def purge() -> dict[str, int]:
    """Periodic (Celery beat): enforce retention, crypto-shred meetings past it."""
    report = purge_expired(runtime())
    if report.meetings_shredded:
        log.info("retention purge: %d meetings crypto-shredded", report.meetings_shredded)
    return {"meetings_shredded": report.meetings_shredded}


@app.task(
    name=SHRED,
    acks_late=True,
    autoretry_for=(StoreUnavailable, KeyUnavailable, KeyConflict),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def shred(tenant_id: str) -> int:
    """After a meeting delete: rotate and retire the tenant key, so a backup's copies of the
    deleted meeting's wrapped keys can no longer be unwrapped. Retried with backoff while
    the KMS is unavailable; after that the beat's ``shred-retry`` takes it up."""
    done = finish_shreds(runtime(), tenant_id)
    if done:
        log.info("key rotated and retired after %d meeting deletes of tenant %s", done, tenant_id)
    return done


@app.task(name=SHRED_RETRY, acks_late=True)
def shred_retry() -> int:
    """Periodic (Celery beat): finish the meeting deletes whose key rotation is still
    pending, so a KMS outage delays a shred but never leaves it half done."""
    return retry_shreds(runtime(), older_than=get_settings().shred_retry)
