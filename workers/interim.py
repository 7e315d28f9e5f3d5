"""The interim caption task: what an utterance in progress said so far, shown while the
person still speaks. Arguments are ids; content exists only in this process's memory.

Capture keeps one slot per participant holding the newest sealed interim audio of the
utterance in progress and sends one message per interim on the interim queue, which workers
take only when no final segment waits. A task takes whatever the slot holds then, so under a
backlog only the newest interim is transcribed and the messages of older ones find the slot
empty (``superseded``). The same policy checks as for finals apply, before and after the
model call; the text is sealed with the meeting's transcript key as an interim and shown
until the utterance's final replaces it (:mod:`pipeline.store.interims`). Interims never
enter the transcript, exports or retention, and are never retried: a late one is worthless.
"""

from __future__ import annotations

import logging

from keys.errors import InvalidSeal, KeyRevoked, UnknownKey
from keys.types import KeyUse
from pipeline import faults
from pipeline.errors import NotFound
from pipeline.models import Meeting
from pipeline.queue import TRANSCRIBE_INTERIM
from pipeline.runtime import Runtime
from pipeline.sealing import open_interim_audio, seal_interim_transcript
from pipeline.store.segments import CAPTION_HISTORY
from workers import metrics
from workers.app import app
from workers.tasks import _data_key, key_cache, runtime, transcriber

__all__ = ["transcribe_interim"]

log = logging.getLogger(__name__)


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


def _interim(rt: Runtime, meeting_id: str, participant_id: str) -> str:
    taken = rt.store.interims.take_audio(meeting_id, participant_id)
    if taken is None:
        return "superseded"
    part, sealed = taken
    try:
        meeting = rt.store.meetings.get(meeting_id)
        if why := _refused(rt, meeting, participant_id):
            return why
        if rt.store.segments.transcript_segments(meeting_id, [sealed.segment_id]):
            return "too-late"  # the utterance's final is already shown
        audio = open_interim_audio(_data_key(rt, meeting, KeyUse.AUDIO), meeting.tenant_id, sealed)
        del sealed
        if audio.part != part:  # the slot said one number, the sealed payload another
            return "failed-authentication"
        result = transcriber().transcribe(audio, meeting.language, meeting.translate, interim=True)
        del audio
        # the switch may have flipped while the model listened
        meeting = rt.store.meetings.get(meeting_id)
        if why := _refused(rt, meeting, participant_id):
            return why
        if not result.text:
            return "transcribed"  # nothing said yet worth showing
        text_key = _data_key(rt, meeting, KeyUse.TRANSCRIPT)
        shown = rt.store.interims.put_text(
            seal_interim_transcript(text_key, meeting.tenant_id, meeting_id, result),
            part,
            CAPTION_HISTORY,
        )
        return "transcribed" if shown else "too-late"
    except NotFound:
        return "meeting-gone"
    except KeyRevoked:
        return "key-revoked"
    except (InvalidSeal, UnknownKey):
        return "failed-authentication"


@app.task(name=TRANSCRIBE_INTERIM, ignore_result=True)
def transcribe_interim(meeting_id: str, participant_id: str) -> str:
    """Transcribe the participant's newest interim audio, if any waits, and show it."""
    rt = runtime()
    outcome = _interim(rt, meeting_id, participant_id)
    metrics.count_interim(outcome)
    if outcome != "meeting-gone":  # a deleted meeting keeps no counts
        rt.store.interims.count(meeting_id, outcome)
    return outcome
