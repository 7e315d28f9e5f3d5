"""Capture: the policy check at the edge, then seal, store and enqueue, in that order.

Used by every source of audio (a file today; the bot's participant tracks next). While the
policy says no, segments are dropped in memory: nothing is written or queued.
"""

from __future__ import annotations

import time

from keys.errors import KeyRevoked
from keys.types import DataKey, KeyUse, Purpose
from pipeline.datakeys import data_key
from pipeline.models import AudioSegment, Meeting
from pipeline.queue import enqueue_transcribe
from pipeline.runtime import Runtime
from pipeline.sealing import seal_audio

__all__ = ["Capture"]


class Capture:
    """Seals one meeting's segments. The policy is re-read at most every ``policy_ttl``
    seconds (default 0.5 s), so switching off takes effect well within one second."""

    def __init__(self, rt: Runtime, meeting: Meeting, policy_ttl: float = 0.5) -> None:
        self.rt = rt
        self.meeting = meeting
        self.policy_ttl = policy_ttl
        self._checked = time.monotonic()
        self._key: DataKey | None = None
        self._audio_ttl = rt.store.tenants.get(meeting.tenant_id).audio_ttl
        self.dropped = 0
        self.sealed = 0

    def _policy(self) -> Meeting:
        if time.monotonic() - self._checked >= self.policy_ttl:
            self.meeting = self.rt.store.meetings.get(self.meeting.id)
            tenant = self.rt.store.tenants.get(self.meeting.tenant_id)
            self._audio_ttl = tenant.audio_ttl
            if tenant.revoked:
                self._key = None  # forget the data key: nothing more is sealed with it
                raise KeyRevoked(f"the key of tenant {self.meeting.tenant_id} was revoked")
            self._checked = time.monotonic()
        return self.meeting

    def submit(self, segment: AudioSegment) -> str | None:
        """Seal, store and enqueue ``segment``; None if policy dropped it."""
        meeting = self._policy()
        if not meeting.transcribes(segment.participant_id):
            self.dropped += 1
            return None
        if self._key is None:
            self._key = data_key(self.rt, meeting, KeyUse.AUDIO, Purpose.TRANSCRIBE)
        sealed = seal_audio(self._key, meeting.tenant_id, meeting.id, segment)
        sid = self.rt.store.segments.put_audio(sealed, self._audio_ttl)
        enqueue_transcribe(meeting.id, sid)
        self.sealed += 1
        return sid
