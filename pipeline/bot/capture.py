"""Capture at the edge: participant audio -> 16 kHz mono -> utterances -> policy -> sealed.

:class:`TrackCapture` consumes one participant's WebRTC track. Frames arrive as 48 kHz Opus
decoded by aiortc; while the policy says no for that participant they are dropped on arrival
and the segmenter forgets what it held, so audio from an "off" period is never even cut into
an utterance. Otherwise frames are resampled (PyAV, five frames per call) and fed to the
voice-activity segmenter; each utterance is handed to the meeting's :class:`MeetingCapture`.

:class:`MeetingCapture` seals each utterance at once, in memory, with the meeting's audio data
key, the participant and position bound in. Storing and enqueueing happen in a writer task off
the event loop, from a backlog of *sealed* segments bounded in bytes: a slow or absent Redis
never makes the bot hold plaintext, and never lets its memory grow without limit; segments
beyond the bound are dropped and counted.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from keys.errors import KeyRevoked, NotFound, StoreUnavailable
from keys.types import DataKey, KeyUse, Purpose
from pipeline import faults, metrics
from pipeline.audio.segmenter import Segmenter, SegmenterConfig
from pipeline.bot.policy import MeetingPolicy
from pipeline.datakeys import data_key
from pipeline.models import AudioSegment, Meeting, SealedSegment
from pipeline.queue import enqueue_transcribe
from pipeline.runtime import Runtime
from pipeline.sealing import seal_audio

__all__ = ["CaptureStats", "MeetingCapture", "TrackCapture"]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
#: frames resampled and segmented together: 5 x 20 ms costs a third of 5 separate calls
#: and delays an utterance's end by at most 80 ms
BATCH_FRAMES = 5
_WRITE_BATCH = 32


@dataclass
class CaptureStats:
    frames: int = 0
    #: frames dropped on arrival because the policy said no
    frames_off: int = 0
    sealed: int = 0
    stored: int = 0
    #: utterances not sealed because the policy changed while they were being cut
    dropped_policy: int = 0
    #: sealed segments dropped because the backlog was full (Redis slow or down)
    dropped_backlog: int = 0


class MeetingCapture:
    """Seals and stores the utterances of one meeting's participants."""

    def __init__(
        self, rt: Runtime, policy: MeetingPolicy, backlog_bytes: int | None = None
    ) -> None:
        self.rt = rt
        self.policy = policy
        self.meeting_id = policy.meeting.id
        self.tenant_id = policy.meeting.tenant_id
        self.backlog_limit = backlog_bytes or rt.settings.capture_backlog_mb * 2**20
        self.stats = CaptureStats()
        self._key: DataKey | None = None
        self._key_lock = asyncio.Lock()
        self._backlog: collections.deque[SealedSegment] = collections.deque()
        self._backlog_bytes = 0
        self._wake = asyncio.Event()
        self._audio_ttl: int | None = None
        policy.on_change.append(self._policy_changed)

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    def _policy_changed(self) -> None:
        if self.policy.revoked or self.policy.ended:
            self._key = None  # nothing more is sealed with it
        if not self.policy.meeting.transcription or self.policy.revoked or self.policy.ended:
            # Off means off: what waits here unstored is discarded, not stored for the
            # worker to purge later.
            self.stats.dropped_policy += len(self._backlog)
            metrics.SEGMENTS_DROPPED.labels("policy").inc(len(self._backlog))
            self._backlog.clear()
            self._backlog_bytes = 0

    async def _data_key(self) -> DataKey:
        async with self._key_lock:
            if self._key is not None:
                return self._key
            key, ttl = await asyncio.to_thread(self._fetch_key, self.policy.meeting)
            self._key, self._audio_ttl = key, ttl
            return key

    def _fetch_key(self, meeting: Meeting) -> tuple[DataKey, int | None]:
        tenant = self.rt.store.tenants.get(self.tenant_id)
        return data_key(self.rt, meeting, KeyUse.AUDIO, Purpose.TRANSCRIBE), tenant.audio_ttl

    async def submit(self, participant: str, start_ms: int, pcm: bytes) -> None:
        """Seal one utterance (if the policy still allows it) and queue it for storing."""
        if not self.policy.transcribes(participant):
            return self._dropped("policy")
        try:
            key = await self._data_key()
        except (KeyRevoked, NotFound):
            return self._dropped("policy")
        except StoreUnavailable:
            return self._dropped("backlog")  # no key without Redis: cannot seal, so drop
        if not self.policy.transcribes(participant):  # changed while we fetched the key
            return self._dropped("policy")
        segment = AudioSegment(participant, start_ms, start_ms, SAMPLE_RATE, pcm)
        sealed = seal_audio(key, self.tenant_id, self.meeting_id, segment)
        self.stats.sealed += 1
        metrics.SEGMENTS_SEALED.inc()
        if self._backlog_bytes + len(sealed.sealed) > self.backlog_limit:
            self._dropped("backlog")
            log.warning(
                "meeting %s: capture backlog full (%d segments); dropped one",
                self.meeting_id,
                len(self._backlog),
            )
            return
        self._backlog.append(sealed)
        self._backlog_bytes += len(sealed.sealed)
        self._wake.set()

    def _drop_oldest(self) -> None:
        sealed = self._backlog.popleft()
        self._backlog_bytes -= len(sealed.sealed)
        self._dropped("backlog")

    def _dropped(self, reason: str) -> None:
        if reason == "policy":
            self.stats.dropped_policy += 1
        else:
            self.stats.dropped_backlog += 1
        metrics.SEGMENTS_DROPPED.labels(reason).inc()

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
                except StoreUnavailable:
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
                delay = 0.2
                for sealed in batch:  # unless a policy change cleared the backlog meanwhile
                    if self._backlog and self._backlog[0] is sealed:
                        self._backlog.popleft()
                        self._backlog_bytes -= len(sealed.sealed)
                        self.stats.stored += 1
                        metrics.SEGMENTS_STORED.inc()

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until everything sealed so far is stored."""
        deadline = time.monotonic() + timeout
        while self._backlog and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.05)

    def _store(self, batch: list[SealedSegment]) -> None:
        for sealed in batch:
            sid = self.rt.store.segments.put_audio(sealed, self._audio_ttl)
            try:
                enqueue_transcribe(self.meeting_id, sid)
            except Exception as exc:  # the broker is Redis: same outage, same retry
                raise StoreUnavailable(f"cannot enqueue: {type(exc).__name__}") from None


class TrackCapture:
    """One participant's audio track, consumed until it ends or is cancelled."""

    def __init__(
        self,
        capture: MeetingCapture,
        participant: str,
        track: MediaStreamTrack,
        config: SegmenterConfig | None = None,
    ) -> None:
        self.capture = capture
        self.participant = participant
        self.track = track
        settings = capture.rt.settings
        self.config = config or SegmenterConfig(
            max_utterance_ms=settings.max_segment_ms, end_silence_ms=settings.end_silence_ms
        )
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._segmenter: Segmenter | None = None
        self._origin_ms = 0
        self._pending: list[np.ndarray] = []  # decoded frames not yet resampled
        self._shape: tuple[str, str, int] | None = None

    def _meeting_ms(self) -> int:
        return int((time.time() - self.capture.policy.meeting.created) * 1000)

    async def run(self) -> None:
        stats = self.capture.stats
        policy = self.capture.policy
        frames_on, frames_off = metrics.FRAMES.labels("captured"), metrics.FRAMES.labels("off")
        try:
            while True:
                try:
                    frame = await self.track.recv()
                except MediaStreamError:
                    break
                stats.frames += 1
                if not policy.transcribes(self.participant):
                    stats.frames_off += 1
                    frames_off.inc()
                    self._segmenter = None  # forget the utterance in progress
                    self._pending.clear()
                    continue
                if not isinstance(frame, av.AudioFrame):
                    continue
                if self._segmenter is None:
                    self._segmenter = Segmenter(self.config)
                    self._origin_ms = self._meeting_ms()
                    self._shape = None
                shape = (frame.format.name, frame.layout.name, frame.sample_rate)
                if shape != self._shape:
                    await self._process()  # one batch holds frames of one shape only
                    self._shape = shape
                frames_on.inc()
                self._pending.append(frame.to_ndarray())
                if len(self._pending) >= BATCH_FRAMES:
                    await self._process()
        finally:
            await self._process()
            await self._flush()

    async def _process(self) -> None:
        """Resample and segment the frames held: one call per batch, not per frame."""
        if not self._pending or self._shape is None or self._segmenter is None:
            self._pending.clear()
            return
        fmt, layout, rate = self._shape
        batch = av.AudioFrame.from_ndarray(
            np.concatenate(self._pending, axis=1), format=fmt, layout=layout
        )
        batch.sample_rate = rate
        self._pending.clear()
        for out in self._resampler.resample(batch):
            for utt in self._segmenter.feed(out.to_ndarray().tobytes()):
                await self.capture.submit(self.participant, self._origin_ms + utt.start_ms, utt.pcm)

    async def _flush(self) -> None:
        segmenter, self._segmenter = self._segmenter, None
        if segmenter is None or not self.capture.policy.transcribes(self.participant):
            return
        for utt in segmenter.flush():
            await self.capture.submit(self.participant, self._origin_ms + utt.start_ms, utt.pcm)
