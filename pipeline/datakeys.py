"""A meeting's data keys, unwrapped for one purpose and audited: the one way anything in
sealscribe gets a key that opens content (capture, workers, delivery).

Each participant's content has its own pair of data keys (audio, transcript), made and
wrapped when capture first hears them (:func:`sealing_key`), so that one person can be
erased by destroying their keys alone. Content from before per-participant keys is opened
with the meeting's own keys, which also seal the bot's join URL.
"""

from __future__ import annotations

from keys.errors import KeyRevoked
from keys.types import DataKey, KeyContext, KeyUse, Purpose
from pipeline.models import Meeting
from pipeline.runtime import Runtime

__all__ = ["ParticipantKeys", "data_key", "sealing_key"]


def _refuse_if_revoked(rt: Runtime, meeting: Meeting, purpose: Purpose, who: str | None) -> None:
    if rt.store.tenants.get(meeting.tenant_id).revoked:
        rt.keys.audit.record(
            meeting.tenant_id,
            "unwrap",
            actor=rt.actor,
            outcome="KeyRevoked",
            meeting=meeting.id,
            purpose=Purpose(purpose).value,
            participant=who,
        )
        raise KeyRevoked(f"the key of tenant {meeting.tenant_id} was revoked")


def data_key(
    rt: Runtime,
    meeting: Meeting,
    use: KeyUse,
    purpose: Purpose,
    participant_id: str | None = None,
) -> DataKey:
    """Unwrap the data key that opens ``use`` content of ``participant_id`` (their own, or
    the meeting's where they have none; the meeting's without a participant) for
    ``purpose`` (audited). Refused outright, before any key use (but audited), once the
    tenant has revoked its key."""
    _refuse_if_revoked(rt, meeting, purpose, participant_id)
    owner, wrapped = rt.store.meetings.content_key(meeting.id, use, participant_id)
    context = KeyContext(meeting.tenant_id, meeting.id, use, owner)
    return rt.keys.unwrap(context, wrapped, purpose, rt.actor)


def sealing_key(rt: Runtime, meeting: Meeting, participant_id: str) -> DataKey:
    """The participant's own audio data key for capture; on first use their audio and
    transcript keys are made and wrapped (audited, purpose transcribe) and stored."""
    if not rt.store.meetings.has_participant_keys(meeting.id, participant_id):
        _refuse_if_revoked(rt, meeting, Purpose.TRANSCRIBE, participant_id)
        keys = {use: DataKey.generate() for use in (KeyUse.AUDIO, KeyUse.TRANSCRIPT)}
        wrapped = {
            use: rt.keys.wrap(
                KeyContext(meeting.tenant_id, meeting.id, use, participant_id),
                key,
                Purpose.TRANSCRIBE,
                rt.actor,
            )
            for use, key in keys.items()
        }
        if rt.store.meetings.add_participant_keys(meeting.id, participant_id, wrapped):
            return keys[KeyUse.AUDIO]
    return data_key(rt, meeting, KeyUse.AUDIO, Purpose.TRANSCRIBE, participant_id)


class ParticipantKeys:
    """One meeting's ``use`` keys, unwrapped for ``purpose`` once per participant (each
    use audited) as a reader meets them: call with a participant id."""

    def __init__(self, rt: Runtime, meeting: Meeting, use: KeyUse, purpose: Purpose) -> None:
        self.rt, self.meeting, self.use, self.purpose = rt, meeting, use, purpose
        self._keys: dict[str, DataKey] = {}

    def known(self, participant_id: str) -> DataKey | None:
        """The key if it was unwrapped already (no Redis, no KMS: safe on an event loop)."""
        return self._keys.get(participant_id)

    def __call__(self, participant_id: str) -> DataKey:
        key = self._keys.get(participant_id)
        if key is None:
            key = data_key(self.rt, self.meeting, self.use, self.purpose, participant_id)
            self._keys[participant_id] = key
        return key
