"""The sink: owns what capture has sealed until Redis has it, stored and queued for a worker.

Sealed segments wait in a backlog bounded in bytes; a writer task stores them and enqueues
their transcription off the event loop, in order, retrying while Redis is away, so a slow or
absent Redis never makes capture hold plaintext and never lets its memory grow without limit.
When the backlog is full a live source drops the newest segment (counted, in
``sealscribe_segments_dropped_total{reason="backlog"}``); a recorded file, which can wait,
waits for room instead and loses nothing (``wait_for_room``). Switching off, revocation or
deletion discards what waits here unstored: off means off, not "stored for the worker to purge".

Interim audio (an utterance in progress, for a live caption) is droppable and never delays or
displaces a final: only the newest sealed interim of each participant is held, outside the
backlog and its bound, and the writer stores it (and queues its transcription) only after the
finals pending in that round. An interim is dropped, never retried, when Redis is away, when
the policy no longer transcribes its participant, or once its utterance's final was put here.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline import faults, metrics
from pipeline.capture.policy import MeetingPolicy
from pipeline.errors import NotFound, StoreUnavailable
from pipeline.manifest import sealed_record
from pipeline.models import SealedSegment
from pipeline.queue import enqueue_interim, enqueue_transcribe
from pipeline.runtime import Runtime

__all__ = ["CaptureStats", "Sink"]

log = logging.getLogger(__name__)

_WRITE_BATCH = 32


@dataclass
class CaptureStats:
    """What one meeting's capture did with what it heard."""

    frames: int = 0
    #: frames dropped on arrival because the policy said no
    frames_off: int = 0
    sealed: int = 0
    stored: int = 0
    #: utterances not sealed, or sealed but discarded unstored, because the policy said no
    dropped_policy: int = 0
    #: sealed segments dropped because the backlog was full (Redis slow or down)
    dropped_backlog: int = 0
    #: interim audio (utterances in progress, for live captions) sealed, stored, and dropped
    #: (refused by the policy, superseded by a newer one or by the final, or Redis away)
    interims_sealed: int = 0
    interims_stored: int = 0
    interims_dropped: int = 0
    #: 32 ms frames of a room's mix that were speech but that its speaker signal named
    #: nobody for (not kept: see :mod:`pipeline.capture.mix`)
    frames_unattributed: int = 0


class Sink:
    """Stores and queues one meeting's sealed segments from a bounded backlog.

    Args:
        rt: the runtime (its store and settings).
        policy: the meeting's policy; a change to off, revocation or deletion empties the
            backlog.
        backlog_bytes: the bound on sealed bytes held (default ``capture_backlog_mb``).
        wait_for_room: wait for room when the backlog is full (a file) instead of dropping
            (a live track, which cannot wait).
    """

    def __init__(
        self,
        rt: Runtime,
        policy: MeetingPolicy,
        backlog_bytes: int | None = None,
        wait_for_room: bool = False,
    ) -> None:
        self.rt = rt
        self.policy = policy
        self.meeting_id = policy.meeting.id
        self.tenant_id = policy.meeting.tenant_id
        self.backlog_limit = backlog_bytes or rt.settings.capture_backlog_mb * 2**20
        self.wait_for_room = wait_for_room
        self.stats = CaptureStats()
        self._backlog: collections.deque[SealedSegment] = collections.deque()
        self._backlog_bytes = 0
        self._wake = asyncio.Event()  # something to store
        self._room = asyncio.Event()  # the backlog shrank
        self._ttl_read = False
        self._audio_ttl: int | None = None
        self._outage: StoreUnavailable | None = None
        # the newest sealed interim of each participant, (part, sealed): one at most each
        self._interims: dict[str, tuple[int, SealedSegment]] = {}
        # the position of the last final put of each participant: interims up to it are moot
        self._final_seq: dict[str, int] = {}
        #: a participant's manifest MAC key, once their data key is unwrapped (the sealer
        #: sets this); without one a segment is stored unrecorded
        self.manifest_key: Callable[[str], bytes | None] = lambda participant: None
        #: records in each participant's manifest, as this sink last saw (None: read it)
        self._records: dict[str, int] = {}
        #: participants whose manifest this sink wrote to (anchored when capture closes)
        self.recorded: set[str] = set()
        policy.on_change.append(self._policy_changed)

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    def _policy_changed(self) -> None:
        if not self.policy.meeting.transcription or self.policy.revoked or self.policy.ended:
            # Off means off: what waits here unstored is discarded, not stored for the
            # worker to purge later.
            self._discard()
        else:  # an interim of a participant who opted out meanwhile goes at once
            self._drop_interims([p for p in self._interims if not self.policy.transcribes(p)])

    def _discard(self) -> None:
        self.dropped("policy", len(self._backlog))
        self._backlog.clear()
        self._backlog_bytes = 0
        self._drop_interims(list(self._interims))
        self._room.set()

    def _drop_interims(self, participants: list[str]) -> None:
        for participant in participants:
            if self._interims.pop(participant, None) is not None:
                self.stats.interims_dropped += 1

    def dropped(self, reason: str, n: int = 1) -> None:
        """Count ``n`` segments dropped for ``reason`` (``policy`` or ``backlog``)."""
        if reason == "policy":
            self.stats.dropped_policy += n
        else:
            self.stats.dropped_backlog += n
        metrics.SEGMENTS_DROPPED.labels(reason).inc(n)

    def unkeyed(self, exc: StoreUnavailable) -> None:
        """The sealer could not get the data key because Redis is away: a live segment
        cannot be sealed, so it is dropped; a file's caller hears the error."""
        if self.wait_for_room:
            raise exc
        self.dropped("backlog")

    async def put(self, sealed: SealedSegment) -> None:
        """Queue ``sealed`` for storing; when the backlog is full, drop it or wait for room."""
        size = len(sealed.sealed)
        if self.wait_for_room:
            await self._wait(lambda: self._fits(size))
            if not self.policy.transcribing:  # switched off meanwhile: as if it had been held
                return self.dropped("policy")
        elif not self._fits(size):
            self.dropped("backlog")
            log.warning(
                "meeting %s: capture backlog full (%d segments); dropped one",
                self.meeting_id,
                len(self._backlog),
            )
            return
        self._backlog.append(sealed)
        self._backlog_bytes += size
        self._final_seq[sealed.participant_id] = max(
            sealed.seq, self._final_seq.get(sealed.participant_id, sealed.seq)
        )
        held = self._interims.get(sealed.participant_id)
        if held is not None and held[1].seq <= sealed.seq:  # its final is here: moot
            self._drop_interims([sealed.participant_id])
        self._wake.set()

    def put_interim(self, sealed: SealedSegment, part: int) -> None:
        """Hold ``sealed`` (interim ``part`` of the utterance at ``sealed.seq``) as its
        participant's newest interim, replacing an older one; never waits, never counts
        against the backlog."""
        participant = sealed.participant_id
        held = self._interims.get(participant)
        moot = sealed.seq <= self._final_seq.get(participant, -1)
        if moot or not self.policy.transcribes(participant):
            self.stats.interims_dropped += 1
            return
        if held is not None:
            if (held[1].seq, held[0]) >= (sealed.seq, part):  # holds a newer one already
                self.stats.interims_dropped += 1
                return
            self.stats.interims_dropped += 1  # superseded before it was stored
        self._interims[participant] = (part, sealed)
        self._wake.set()

    def _fits(self, size: int) -> bool:
        # a file's segment larger than the whole bound still goes, once the backlog is empty
        empty = self.wait_for_room and not self._backlog
        return empty or self._backlog_bytes + size <= self.backlog_limit

    async def _wait(self, ready: Callable[[], bool], stall: float = 10.0) -> None:
        """Wait until ``ready()``; raise the store's error if Redis takes nothing meanwhile
        for ``stall`` seconds (a file's caller is told; nothing is silently lost)."""
        stored, since = self.stats.stored, time.monotonic()
        while not ready():
            if self.stats.stored != stored:
                stored, since = self.stats.stored, time.monotonic()
            elif time.monotonic() - since > stall:
                raise self._outage or StoreUnavailable(
                    f"meeting {self.meeting_id}: Redis stored nothing for {stall:g} s"
                )
            self._room.clear()
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), 0.5)

    async def writer(self) -> None:
        """Store and enqueue sealed segments until cancelled; retries while Redis is away."""
        delay = 0.2
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._backlog:
                batch = list(self._backlog)[:_WRITE_BATCH]
                try:
                    await asyncio.to_thread(self._store, batch)
                except NotFound:  # the tenant is gone: nothing more of it is stored
                    self._discard()
                    continue
                except StoreUnavailable as exc:
                    self._outage = exc
                    if faults.on("capture-drops-on-outage"):
                        for _ in batch:
                            self._drop_oldest()
                        continue
                    log.warning(
                        "meeting %s: Redis unavailable; holding %d sealed segments",
                        self.meeting_id,
                        len(self._backlog),
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                self._outage = None
                delay = 0.2
                for sealed in batch:  # unless a policy change cleared the backlog meanwhile
                    if self._backlog and self._backlog[0] is sealed:
                        self._backlog.popleft()
                        self._backlog_bytes -= len(sealed.sealed)
                        self.stats.stored += 1
                        metrics.SEGMENTS_STORED.inc()
                self._room.set()
            if self._interims and not self._backlog:
                await self._write_interims()

    async def _write_interims(self) -> None:
        """Store and queue the interims held, once no final waits: never retried (an
        interim is worth something only now), dropped on any failure."""
        held, self._interims = self._interims, {}
        batch = [
            (part, sealed)
            for part, sealed in held.values()
            if self.policy.transcribes(sealed.participant_id)
            and sealed.seq > self._final_seq.get(sealed.participant_id, -1)
        ]
        self.stats.interims_dropped += len(held) - len(batch)
        if not batch:
            return
        try:
            stored = await asyncio.to_thread(self._store_interims, batch)
        except (NotFound, StoreUnavailable):
            stored = 0
        self.stats.interims_stored += stored
        self.stats.interims_dropped += len(batch) - stored

    def _drop_oldest(self) -> None:
        if self._backlog:
            sealed = self._backlog.popleft()
            self._backlog_bytes -= len(sealed.sealed)
            self.dropped("backlog")
            self._room.set()

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until everything sealed so far is stored."""
        deadline = time.monotonic() + timeout
        while self._backlog and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.05)

    async def flush(self, stall: float = 10.0) -> None:
        """Wait until everything sealed so far is stored; raise the store's error if Redis
        takes nothing for ``stall`` seconds (a file's end: nothing may be left behind)."""
        await self._wait(lambda: not self._backlog, stall)

    def _store_interims(self, batch: list[tuple[int, SealedSegment]]) -> int:
        """Store each interim in its participant's slot and queue it; how many were."""
        stored = 0
        for part, sealed in batch:
            # the policy may have changed while this thread waited for its turn
            if not self.policy.transcribes(sealed.participant_id):
                continue
            if not self.rt.store.interims.put_audio(sealed, part):
                continue  # the slot holds a newer one of this participant
            try:
                enqueue_interim(self.meeting_id, sealed.participant_id)
            except Exception as exc:  # the broker is Redis: the same outage
                raise StoreUnavailable(f"cannot enqueue: {type(exc).__name__}") from None
            stored += 1
        return stored

    def _store(self, batch: list[SealedSegment]) -> None:
        if not self._ttl_read:
            self._audio_ttl = self.rt.store.tenants.get(self.tenant_id).audio_ttl
            self._ttl_read = True
        for sealed in batch:
            sid = self._put(sealed)
            try:
                enqueue_transcribe(self.meeting_id, sid)
            except Exception as exc:  # the broker is Redis: same outage, same retry
                raise StoreUnavailable(f"cannot enqueue: {type(exc).__name__}") from None

    def _put(self, sealed: SealedSegment) -> str:
        """Store one sealed segment, recorded in its participant's manifest (as its next
        record, read again if another writer took that number)."""
        segments = self.rt.store.segments
        key = None if faults.on("no-manifest") else self.manifest_key(sealed.participant_id)
        if key is None:
            return segments.put_audio(sealed, self._audio_ttl)
        participant = sealed.participant_id
        ttl = self._audio_ttl or segments.audio_ttl
        for _ in range(16):
            n = self._records.get(participant)
            if n is None:
                n = segments.manifest_count(self.meeting_id, participant)
            record = sealed_record(key, n, sealed.seq, int(time.time()) + ttl)
            if segments.put_recorded(sealed, ttl, n, record):
                self._records[participant] = n + 1
                self.recorded.add(participant)
                return sealed.segment_id
            self._records.pop(participant, None)
        raise StoreUnavailable(f"meeting {self.meeting_id}: the manifest is too busy to append to")

    def anchor(self) -> None:
        """Anchor each manifest this sink wrote to in the tenant's keyed audit chain (its
        record count): records cut from its end are then named by verification."""
        for participant in sorted(self.recorded):
            count = self.rt.store.segments.manifest_count(self.meeting_id, participant)
            self.rt.keys.audit.record(
                self.tenant_id,
                "manifest",
                actor=self.rt.actor,
                outcome=str(count),
                meeting=self.meeting_id,
                participant=participant,
            )
        self.recorded.clear()
