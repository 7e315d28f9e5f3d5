"""Meeting services: create, the transcription switch, consent, data keys, delete.

Rules live here once: transcription is off unless asked for; a tenant only ever sees its own
meetings (anything else is :class:`NotFound`); deleting shreds keys before records.
"""

from __future__ import annotations

import re

from keys.errors import KeyRevoked
from keys.types import DataKey, KeyContext, KeyUse, Purpose
from pipeline import faults
from pipeline.asr import is_multilingual
from pipeline.errors import InvalidInput
from pipeline.models import Meeting
from pipeline.runtime import Runtime
from pipeline.store.meetings import MeetingStore

__all__ = [
    "create_meeting",
    "delete_meeting",
    "get_meeting",
    "list_meetings",
    "set_consent",
    "set_transcription",
]


_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")


def create_meeting(
    rt: Runtime,
    tenant_id: str,
    transcription: bool = False,
    language: str | None = None,
    translate: bool = False,
) -> Meeting:
    """A new meeting with fresh audio and transcript data keys, wrapped by the tenant key.

    Transcription is **off** unless ``transcription=True``. ``language`` (ISO 639-1, e.g.
    ``fr``) skips detection; ``translate`` gives English text for speech in any language.
    Both need a multilingual model (``SEALSCRIBE_MODEL=base``) unless the language is
    English."""
    if language is not None and not _LANGUAGE_RE.match(language):
        raise InvalidInput(
            f"language must be an ISO 639-1 code such as 'en' or 'fr', got {language!r}"
        )
    if (translate or language not in (None, "en")) and not is_multilingual(rt.settings.model):
        raise InvalidInput(
            f"the model {rt.settings.model!r} knows English only; other "
            "languages and translation need SEALSCRIBE_MODEL=base"
        )
    if rt.store.tenants.get(tenant_id).revoked:  # NotFound for an unknown tenant, too
        raise KeyRevoked(f"the key of tenant {tenant_id} was revoked")
    meeting_id = MeetingStore.new_id()
    wrapped = {
        use: rt.keys.wrap(
            KeyContext(tenant_id, meeting_id, use), DataKey.generate(), Purpose.TRANSCRIBE, rt.actor
        )
        for use in KeyUse
    }
    return rt.store.meetings.create(
        meeting_id, tenant_id, transcription, wrapped, language, translate
    )


def get_meeting(rt: Runtime, meeting_id: str, tenant_id: str | None = None) -> Meeting:
    return rt.store.meetings.get(meeting_id, tenant_id)


def list_meetings(rt: Runtime, tenant_id: str) -> list[Meeting]:
    rt.store.tenants.get(tenant_id)
    return rt.store.meetings.list(tenant_id)


def set_transcription(
    rt: Runtime, meeting_id: str, on: bool, tenant_id: str | None = None
) -> Meeting:
    """Switch transcription for a meeting, also mid-call; effective for the next segment."""
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    rt.store.meetings.set_transcription(meeting_id, on)
    rt.keys.audit.record(
        meeting.tenant_id,
        "transcription",
        actor=rt.actor,
        outcome="on" if on else "off",
        meeting=meeting_id,
    )
    return rt.store.meetings.get(meeting_id)


def set_consent(
    rt: Runtime, meeting_id: str, participant_id: str, opted_out: bool, tenant_id: str | None = None
) -> Meeting:
    """A participant opts out of (or back into) having their own audio transcribed."""
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    rt.store.meetings.set_opt_out(meeting_id, participant_id, opted_out)
    rt.keys.audit.record(
        meeting.tenant_id,
        "consent",
        actor=rt.actor,
        outcome=f"{participant_id}:{'opted-out' if opted_out else 'opted-in'}",
        meeting=meeting_id,
    )
    return rt.store.meetings.get(meeting_id)


def delete_meeting(rt: Runtime, meeting_id: str, tenant_id: str | None = None) -> None:
    """Crypto-shred a meeting, then delete its records.

    The wrapped data keys go first. Because a backup of Redis taken earlier still holds
    copies of them, the tenant key is then rotated, every other meeting's keys rewrapped,
    and the old versions retired: those copies can no longer be unwrapped by anyone."""
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    rt.store.meetings.shred_keys(meeting.id)
    rt.keys.audit.record(meeting.tenant_id, "shred", actor=rt.actor, meeting=meeting.id)
    rt.store.meetings.delete(meeting)  # also tells a bot capturing it to stop
    rt.store.bots.delete(meeting.id)
    if faults.on("no-rotate-on-delete"):
        return  # the old key versions stay: a backup's wrapped keys still open
    try:
        report = rt.keys.rotate(meeting.tenant_id, rt.actor)
        rt.keys.retire_below(meeting.tenant_id, report.primary_version, rt.actor)
    except KeyRevoked:
        pass  # a revoked key opens nothing already
