"""A mixed-audio room's one track as a source of capture: the mix, cut into utterances at
pauses and at changes of speaker, each labelled with who was talking, or dropped.

Some rooms give the bot only the mixed audio of everyone (a Janus AudioBridge), with a
separate signal of who is talking, which the connector feeds into the room's
:class:`~pipeline.capture.speakers.SpeakerTimeline`. This module turns the two into the same
thing a participant's own track gives: sealed utterances of one participant id.

How a moment of the mix is handled, in order (per 32 ms frame, once the timeline has had time
to hear about it: frames are held ``hold_ms`` before they are decided):

1. the meeting is switched off, the key revoked or the meeting deleted: dropped;
2. someone whom the policy does not transcribe (opted out; not consented in an ``opt-in``
   meeting) was talking within ``guard_ms`` of it: dropped, with the utterance in progress
   ended before it. ``guard_ms`` exceeds the timeline's error, so the start and end of their
   speech are dropped too. Nothing of the mix is kept while they talk, not even someone
   else's words over theirs;
3. its label is who is talking: one participant, or a group of 2-4 for speech at once
   (``Ann + Bob``, :func:`pipeline.ids.speaker_group`, transcribed only if each of them
   is); more than four at once is dropped. A new label must hold for ``switch_ms`` before
   it cuts the utterance in progress, and someone talking over it for ``join_ms`` (a "mm"
   or a cough over someone's sentence does not cut it);
4. speech that nobody was reported talking for (not within ``reach_ms``) is not speech: it
   can end an utterance but starts none, so a voice below the room's talking threshold is
   never kept on its own (counted in ``frames_unattributed``).

Each label's run of frames goes through a :class:`~pipeline.audio.segmenter.Segmenter` fed
with the Silero voice detector's decisions on the mix, and its utterances (finals and
interims) go to the meeting's :class:`~pipeline.capture.sealer.Sealer`, which asks the
policy again before it seals. Audio is held in memory only, and only for ``hold_ms``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from pipeline import metrics
from pipeline.audio.segmenter import Segmenter, SegmenterConfig, Utterance
from pipeline.audio.vad import FRAME_MS, FRAME_SAMPLES, SileroSpeech
from pipeline.capture.sealer import Sealer
from pipeline.capture.speakers import SpeakerTimeline
from pipeline.capture.track import live_config
from pipeline.ids import speaker_group
from pipeline.models import MAX_SPEAKERS, AudioSegment, speakers

__all__ = ["MixCapture", "MixTiming"]

SAMPLE_RATE = 16000
_FRAME_BYTES = FRAME_SAMPLES * 2
#: decoded 20 ms frames resampled together (as for a participant's track)
BATCH_FRAMES = 5


@dataclass(frozen=True)
class MixTiming:
    """How the mix is matched with a speaker signal that reports a change up to
    ``2 * window_ms`` late (AudioBridge: ``audio_active_packets`` x 20 ms)."""

    window_ms: int = 2000

    @property
    def lag_ms(self) -> int:
        """Moved back from each reported change (the middle of its lateness)."""
        return self.window_ms

    @property
    def reach_ms(self) -> int:
        """Speech this close to someone's reported talking is theirs."""
        return self.window_ms

    @property
    def guard_ms(self) -> int:
        """Mix dropped either side of a non-transcribed participant's talking."""
        return self.window_ms + 300

    @property
    def switch_ms(self) -> int:
        """How long a new set of talkers must hold before it cuts an utterance."""
        return 160

    @property
    def join_ms(self) -> int:
        """How long someone talking over the utterance in progress must hold before it is
        cut into speech at once (a "mm" or a cough over a sentence does not split it)."""
        return self.window_ms + 400  # (what the hold still covers)

    @property
    def hold_ms(self) -> int:
        """How long a frame waits for the signal's reports before it is decided."""
        return self.guard_ms + self.window_ms + 100


@dataclass
class _Frame:
    at_ms: int  # meeting time of its first sample
    pcm: bytes
    speech: bool


class MixCapture:
    """The room's mixed track, consumed until it ends or is cancelled."""

    def __init__(
        self,
        sealer: Sealer,
        track: MediaStreamTrack,
        timeline: SpeakerTimeline,
        timing: MixTiming | None = None,
        config: SegmenterConfig | None = None,
    ) -> None:
        self.sealer = sealer
        self.track = track
        self.timeline = timeline
        self.timing = timing or MixTiming()
        self.config = config or live_config(sealer.rt.settings)
        if self.config.frame_ms != FRAME_MS:
            raise ValueError(f"the mix is decided per {FRAME_MS} ms frame")
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._voice = SileroSpeech()
        self._pending: list[np.ndarray] = []
        self._shape: tuple[str, str, int] | None = None
        self._pcm = b""  # resampled audio not yet a whole 32 ms frame
        self._held: deque[_Frame] = deque()
        #: where the stream started in meeting time (refined by each frame's arrival)
        self._origin_ms: float | None = None
        self._received_ms = 0.0
        self._next_ms = 0.0  # stream time of the next whole frame
        self._label: str | None = None
        self._segmenter: Segmenter | None = None
        self._run_origin = 0

    def _now_ms(self) -> float:
        return (time.time() - self.sealer.policy.meeting.created) * 1000

    async def run(self) -> None:
        stats = self.sealer.stats
        try:
            while True:
                try:
                    frame = await self.track.recv()
                except MediaStreamError:
                    break
                stats.frames += 1
                if not isinstance(frame, av.AudioFrame):
                    continue
                arrived = self._now_ms()
                if self._origin_ms is None:
                    self._origin_ms = arrived
                # the stream started no later than this frame's arrival less what came before
                self._origin_ms = min(self._origin_ms, arrived - self._received_ms)
                self._received_ms += frame.samples * 1000 / frame.sample_rate
                shape = (frame.format.name, frame.layout.name, frame.sample_rate)
                if shape != self._shape:
                    self._resample()
                    self._shape = shape
                self._pending.append(frame.to_ndarray())
                if len(self._pending) >= BATCH_FRAMES:
                    self._resample()
                    await self._decide(arrived - self.timing.hold_ms)
        finally:
            # what is still held was not yet checked against the whole guard: it is dropped
            self._held.clear()
            await self._end_run(keep=True)

    def _resample(self) -> None:
        """Resample what is pending, cut it into 32 ms frames and hold them, with Silero's
        decision on each."""
        if not self._pending or self._shape is None or self._origin_ms is None:
            self._pending.clear()
            return
        fmt, layout, rate = self._shape
        batch = av.AudioFrame.from_ndarray(
            np.concatenate(self._pending, axis=1), format=fmt, layout=layout
        )
        batch.sample_rate = rate
        self._pending.clear()
        for out in self._resampler.resample(batch):
            self._pcm += out.to_ndarray().tobytes()
        whole = len(self._pcm) // _FRAME_BYTES * _FRAME_BYTES
        if not whole:
            return
        pcm, self._pcm = self._pcm[:whole], self._pcm[whole:]
        for i, speech in enumerate(self._voice.decide(pcm)):
            at = round(self._origin_ms + self._next_ms)
            self._held.append(_Frame(at, pcm[i * _FRAME_BYTES : (i + 1) * _FRAME_BYTES], speech))
            self._next_ms += FRAME_MS

    async def _decide(self, settled_ms: float) -> None:
        """Decide every held frame the signal has had time to report on."""
        while self._held and self._held[0].at_ms + FRAME_MS <= settled_ms:
            await self._frame(self._held.popleft())
        self.timeline.prune(int(settled_ms) - 4 * self.timing.hold_ms)

    async def _frame(self, frame: _Frame) -> None:
        policy, stats, timing = self.sealer.policy, self.sealer.stats, self.timing
        if not policy.transcribing:
            return await self._drop(keep=False)
        near = self.timeline.talkers(frame.at_ms, timing.guard_ms)
        if any(not policy.transcribes(p) for p in near):
            return await self._drop(keep=True)  # someone who is not to be kept talks
        now = self.timeline.talkers(frame.at_ms)
        if len(now) > MAX_SPEAKERS:
            return await self._drop(keep=True)
        label = self._label
        if now and speaker_group(now) != label:
            joins = label is not None and set(speakers(label)) < now
            later = self.timeline.talkers(
                frame.at_ms + (timing.join_ms if joins else timing.switch_ms)
            )
            if label is None or later == now:
                label = speaker_group(now)
        elif label is None:
            reached = self.timeline.talkers(frame.at_ms, timing.reach_ms)
            if reached and len(reached) <= MAX_SPEAKERS:
                label = speaker_group(reached)
        if label is None:  # nobody to attribute it to
            stats.frames_unattributed += frame.speech
            return None
        if label != self._label:
            await self._end_run(keep=True)
            self._label, self._run_origin = label, frame.at_ms
            self._segmenter = Segmenter(self.config)
        # speech counts only near its label's reported talking; else it can end an
        # utterance, never start or extend one
        named = bool(now) or any(
            p in self.timeline.talkers(frame.at_ms, timing.reach_ms) for p in speakers(label)
        )
        if frame.speech and not named:
            stats.frames_unattributed += 1
        metrics.FRAMES.labels("captured").inc()
        assert self._segmenter is not None
        for utt in self._segmenter.feed(frame.pcm, [frame.speech and named]):
            await self._submit(label, utt)
        return None

    async def _drop(self, keep: bool) -> None:
        """A frame is not kept: end the utterance in progress before it (keeping what came
        before when ``keep``, i.e. when its own speakers are still transcribed)."""
        self.sealer.stats.frames_off += 1
        metrics.FRAMES.labels("off").inc()
        await self._end_run(keep=keep)

    async def _end_run(self, keep: bool) -> None:
        segmenter, label = self._segmenter, self._label
        self._segmenter = self._label = None
        if segmenter is None or label is None:
            return
        if keep and self.sealer.policy.transcribes(label):
            for utt in segmenter.flush():
                await self._submit(label, utt)

    async def _submit(self, label: str, utt: Utterance) -> None:
        start = self._run_origin + utt.start_ms

        def meeting(stream_ms: int | None) -> int | None:
            return None if stream_ms is None else self._run_origin + stream_ms

        segment = AudioSegment(
            label,
            start,
            start,
            SAMPLE_RATE,
            utt.pcm,
            keep_from_ms=meeting(utt.keep_from_ms),
            keep_to_ms=meeting(utt.keep_to_ms),
            part=utt.interim,
        )
        if utt.interim:
            await self.sealer.submit_interim(segment)
        else:
            await self.sealer.submit(segment)
