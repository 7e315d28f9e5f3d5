"""The interim caption task: what an utterance in progress said so far, shown while the
person still speaks. Arguments are ids; content exists only in this process's memory.

Capture keeps one slot per participant holding the newest sealed interim audio of the
utterance in progress and sends one message per interim on the interim queue, which workers
take only when no final segment waits. A task takes whatever the slot holds then, so under a
backlog only the newest interim is transcribed (capture overwrote the older ones, counted
``superseded``) and the messages of older ones find the slot empty. A task also takes other
participants' waiting interims into the same batched model call. The same policy checks as
for finals apply, before and after the model call; the text is sealed with the meeting's
transcript key as an interim and shown until the utterance's final replaces it
(:mod:`pipeline.store.interims`). Interims never enter the transcript, exports or
retention, and are never retried: a late one is worthless.
"""

from __future__ import annotations

from dataclasses import dataclass

from keys.errors import InvalidSeal, KeyRevoked, UnknownKey
from keys.types import KeyUse
from pipeline import faults
from pipeline.errors import NotFound
from pipeline.models import AudioSegment, Meeting, SealedSegment, TranscriptSegment
from pipeline.queue import TRANSCRIBE_INTERIM, finals_waiting
from pipeline.runtime import Runtime
from pipeline.sealing import open_interim_audio, seal_interim_transcript
from pipeline.store.segments import CAPTION_HISTORY
from workers import metrics
from workers.app import app
from workers.tasks import cached_data_key, key_cache, runtime, transcriber

__all__ = ["transcribe_interim"]


def _refused(rt: Runtime, meeting: Meeting, participant_id: str) -> str | None:
    """Why the policy forbids transcribing this participant now, or None."""
    meeting = faults.permitted(meeting, "worker-ignores-policy")
    tenant = faults.unrevoked(rt.store.tenants.get(meeting.tenant_id))
    if tenant.revoked:
        key_cache().forget_tenant(meeting.tenant_id)
        return "key-revoked"
    if not meeting.transcription:
        return "transcription-off"
    if not meeting.transcribes(participant_id):
        return "opted-out"
    return None


@dataclass(frozen=True)
class _Job:
    meeting: Meeting
    part: int
    audio: AudioSegment


def _prepare(rt: Runtime, meeting_id: str, part: int, sealed: SealedSegment) -> _Job | str:
    """Policy check, then open the interim audio in memory; or the outcome if it stops here."""
    try:
        meeting = rt.store.meetings.get(meeting_id)
        if why := _refused(rt, meeting, sealed.participant_id):
            return why
        if rt.store.segments.transcript_segments(meeting_id, [sealed.segment_id]):
            return "too-late"  # the utterance's final is already shown
        key = cached_data_key(rt, meeting, KeyUse.AUDIO, sealed.participant_id)
        audio = open_interim_audio(key, meeting.tenant_id, sealed)
    except NotFound:
        return "meeting-gone"
    except KeyRevoked:
        return "key-revoked"
    except (InvalidSeal, UnknownKey):
        return "failed-authentication"
    if audio.part != part:  # the slot said one number, the sealed payload another
        return "failed-authentication"
    return _Job(meeting, part, audio)


def _finish(rt: Runtime, job: _Job, result: TranscriptSegment) -> str:
    """Check the policy again (the switch may have flipped while the model listened), then
    seal the text and show it, unless the final or a newer interim got there first."""
    meeting_id = job.meeting.id
    try:
        meeting = rt.store.meetings.get(meeting_id)
        if why := _refused(rt, meeting, job.audio.participant_id):
            return why
        if not result.text:
            return "transcribed"  # nothing said yet worth showing
        text_key = cached_data_key(rt, meeting, KeyUse.TRANSCRIPT, job.audio.participant_id)
        sealed = seal_interim_transcript(text_key, meeting.tenant_id, meeting_id, result)
    except NotFound:
        return "meeting-gone"
    except KeyRevoked:
        return "key-revoked"
    shown = rt.store.interims.put_text(sealed, job.part, CAPTION_HISTORY)
    return "transcribed" if shown else "too-late"


@app.task(name=TRANSCRIBE_INTERIM, ignore_result=True)
def transcribe_interim(meeting_id: str, participant_id: str) -> str:
    """Transcribe the participant's newest interim audio, if any still waits, and show it;
    on CUDA other participants' waiting interims (of any meeting) go in the same batched
    model call, each its own clip."""
    if finals_waiting():  # RabbitMQ: a final segment first; the audio stays for the next
        metrics.count_interim("finals-first")
        return "finals-first"
    rt = runtime()
    taken = rt.store.interims.take_audio(meeting_id, participant_id)
    if taken is None:  # a newer interim, a batch or the final took it first
        metrics.count_interim("empty")
        return "empty"
    slots = [(meeting_id, *taken)]
    room = transcriber().interim_batch_size - 1
    if room > 0:
        slots += rt.store.interims.take_waiting(room)
    meeting_ids = [m for m, _, _ in slots]
    prepared = [_prepare(rt, m, part, sealed) for m, part, sealed in slots]
    del slots
    jobs = [p for p in prepared if isinstance(p, _Job)]
    results = (
        transcriber().transcribe_interims(
            [(j.audio, j.meeting.language, j.meeting.translate) for j in jobs]
        )
        if jobs
        else []
    )
    done = iter(_finish(rt, j, r) for j, r in zip(jobs, results, strict=True))
    outcomes = [p if isinstance(p, str) else next(done) for p in prepared]
    del jobs, results
    for m, outcome in zip(meeting_ids, outcomes, strict=True):
        metrics.count_interim(outcome)
        if outcome != "meeting-gone":  # a deleted meeting keeps no counts
            rt.store.interims.count(m, outcome)
    return outcomes[0]
