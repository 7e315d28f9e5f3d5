"""Celery tasks. Arguments are ids; content exists only in this process's memory."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import worker_process_init

from keys.errors import InvalidSeal, KeyRevoked, KeyUnavailable, NotFound, StoreUnavailable
from keys.types import KeyUse, Purpose
from pipeline.config import get_settings
from pipeline.runtime import Runtime, default_actor
from pipeline.sealing import open_audio, seal_transcript
from pipeline.services.meetings import data_key
from workers.app import TRANSCRIBE, app
from workers.transcriber import Transcriber

log = logging.getLogger(__name__)

_runtime: Runtime | None = None
_transcriber: Transcriber | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime.from_settings(get_settings(), default_actor("worker"))
    return _runtime


def transcriber() -> Transcriber:
    global _transcriber
    if _transcriber is None:
        _transcriber = Transcriber(get_settings(),
                                   cpu_threads=int(os.environ.get("SEALSCRIBE_CPU_THREADS", 0)))
    return _transcriber


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    """Load the model when the worker process starts, not on its first segment."""
    transcriber().load()


def _purge(rt: Runtime, tenant_id: str, meeting_id: str, sid: str, reason: str) -> str:
    rt.store.segments.delete_audio(meeting_id, sid)
    rt.keys.audit.record(tenant_id, "purge", actor=rt.actor, outcome=reason, meeting=meeting_id)
    log.info("segment %s of meeting %s purged untranscribed: %s", sid, meeting_id, reason)
    return reason


@app.task(name=TRANSCRIBE, bind=True, acks_late=True, reject_on_worker_lost=True,
          autoretry_for=(StoreUnavailable, KeyUnavailable), dont_autoretry_for=(KeyRevoked,),
          retry_backoff=True, retry_backoff_max=60, max_retries=10)
def transcribe(self: Any, meeting_id: str, segment_id: str) -> str:
    """Transcribe one sealed audio segment, seal its transcript, delete the audio.

    Idempotent: a redelivered task finds the audio gone and does nothing."""
    rt = runtime()
    try:
        meeting = rt.store.meetings.get(meeting_id)
    except NotFound:
        rt.store.segments.delete_audio(meeting_id, segment_id)
        return "meeting-gone"
    sealed = rt.store.segments.get_audio(meeting_id, segment_id)
    if sealed is None:
        return "already-done"
    if not meeting.transcription:
        return _purge(rt, meeting.tenant_id, meeting_id, segment_id, "transcription-off")
    if not meeting.transcribes(sealed.participant_id):
        return _purge(rt, meeting.tenant_id, meeting_id, segment_id, "opted-out")
    try:
        audio_key = data_key(rt, meeting, KeyUse.AUDIO, Purpose.TRANSCRIBE)
        audio = open_audio(audio_key, meeting.tenant_id, sealed)
    except KeyRevoked:
        return _purge(rt, meeting.tenant_id, meeting_id, segment_id, "key-revoked")
    except (InvalidSeal, NotFound):
        return _purge(rt, meeting.tenant_id, meeting_id, segment_id, "failed-authentication")

    result = transcriber().transcribe(audio, meeting.language, meeting.translate)
    del audio

    # The switch may have flipped while we listened: check once more before keeping text.
    meeting = rt.store.meetings.get(meeting_id)
    if not meeting.transcribes(sealed.participant_id):
        return _purge(rt, meeting.tenant_id, meeting_id, segment_id, "transcription-off")
    try:
        text_key = data_key(rt, meeting, KeyUse.TRANSCRIPT, Purpose.TRANSCRIBE)
    except KeyRevoked:
        return _purge(rt, meeting.tenant_id, meeting_id, segment_id, "key-revoked")
    rt.store.segments.complete(seal_transcript(text_key, meeting.tenant_id, meeting_id, result),
                               result.start_ms)
    return "transcribed"
