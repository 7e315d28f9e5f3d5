"""The sealer: owns the policy check at the edge and the meeting's audio data key, and turns
each utterance it is handed into a sealed segment for the sink, or into nothing.

Every source of audio (a live track, a recorded file) hands its utterances here. While the
policy says no for the participant (switched off, opted out, key revoked, meeting deleted) an
utterance is dropped in memory, counted, and never sealed; it is asked again after the data
key was fetched, since the policy may change meanwhile. Otherwise it is sealed at once, in
memory, with the participant and position bound in, and handed to the :class:`Sink`.

Interim audio (an utterance in progress, for a live caption) passes the same checks and is
sealed as its own kind (:func:`~pipeline.sealing.seal_interim_audio`) at its utterance's
position; whatever goes wrong with one, it is dropped and counted, never waited for.

Each participant's audio is sealed with their own data key (made on first use, see
:func:`~pipeline.datakeys.sealing_key`), and the sink records each stored segment in the
participant's manifest with a MAC key derived from it (:mod:`pipeline.manifest`).
"""

from __future__ import annotations

import asyncio

from keys.errors import KeyRevoked, UnknownKey
from keys.types import DataKey
from pipeline import metrics
from pipeline.capture.policy import MeetingPolicy
from pipeline.capture.sink import CaptureStats, Sink
from pipeline.datakeys import sealing_key
from pipeline.errors import NotFound, StoreUnavailable
from pipeline.manifest import manifest_key
from pipeline.models import AudioSegment
from pipeline.runtime import Runtime
from pipeline.sealing import seal_audio, seal_interim_audio

__all__ = ["Sealer"]


class Sealer:
    """Seals one meeting's utterances with its audio data key, if the policy allows."""

    def __init__(self, rt: Runtime, policy: MeetingPolicy, sink: Sink) -> None:
        self.rt = rt
        self.policy = policy
        self.sink = sink
        self.meeting_id = policy.meeting.id
        self.tenant_id = policy.meeting.tenant_id
        self._keys: dict[str, DataKey] = {}
        self._manifest_keys: dict[str, bytes] = {}
        self._key_lock = asyncio.Lock()
        policy.on_change.append(self._policy_changed)
        sink.manifest_key = self._manifest_keys.get

    @property
    def stats(self) -> CaptureStats:
        return self.sink.stats

    def _policy_changed(self) -> None:
        if self.policy.revoked or self.policy.ended:
            self._keys.clear()  # nothing more is sealed with them

    async def _data_key(self, participant: str) -> DataKey:
        """The participant's own audio data key (made on first use), kept while capturing."""
        async with self._key_lock:
            key = self._keys.get(participant)
            if key is None:
                key = await asyncio.to_thread(
                    sealing_key, self.rt, self.policy.meeting, participant
                )
                self._keys[participant] = key
                self._manifest_keys[participant] = manifest_key(
                    key, self.tenant_id, self.meeting_id, participant
                )
            return key

    async def submit(self, segment: AudioSegment) -> None:
        """Seal ``segment`` (if the policy still allows it) and hand it to the sink."""
        if not self.policy.transcribes(segment.participant_id):
            return self.sink.dropped("policy")
        try:
            key = await self._data_key(segment.participant_id)
        except (KeyRevoked, NotFound, UnknownKey):
            return self.sink.dropped("policy")
        except StoreUnavailable as exc:  # no key without Redis: cannot seal
            return self.sink.unkeyed(exc)
        if not self.policy.transcribes(segment.participant_id):  # changed meanwhile
            return self.sink.dropped("policy")
        sealed = seal_audio(key, self.tenant_id, self.meeting_id, segment)
        self.stats.sealed += 1
        metrics.SEGMENTS_SEALED.inc()
        await self.sink.put(sealed)

    async def submit_interim(self, segment: AudioSegment) -> None:
        """Seal interim ``segment`` (``part`` >= 1) under the same policy as a final and
        hand it to the sink, which keeps only the newest of each participant."""
        if not self.policy.transcribes(segment.participant_id):
            self.stats.interims_dropped += 1
            return
        try:
            key = await self._data_key(segment.participant_id)
        except (KeyRevoked, NotFound, UnknownKey, StoreUnavailable):
            self.stats.interims_dropped += 1
            return
        if not self.policy.transcribes(segment.participant_id):  # changed meanwhile
            self.stats.interims_dropped += 1
            return
        sealed = seal_interim_audio(key, self.tenant_id, self.meeting_id, segment)
        self.stats.interims_sealed += 1
        self.sink.put_interim(sealed, segment.part)
