"""A live participant's track as a source of capture: audio frames -> 16 kHz mono ->
voice-activity utterances -> the meeting's :class:`~pipeline.capture.sealer.Sealer`.

Frames arrive as 48 kHz Opus decoded by aiortc; while the policy says no for that participant
they are dropped on arrival and the segmenter forgets what it held, so audio from an "off"
period is never even cut into an utterance (nor reaches the meeting's crosstalk arbiter).
Otherwise frames are resampled (PyAV, five frames per call), given to the track's Silero
voice detector and the meeting's crosstalk arbiter (:class:`~pipeline.capture.crosstalk.
LiveTrack`: frames that carry another participant's louder voice are silenced in memory and
are not speech), and fed with those decisions to the segmenter; each utterance goes to the
sealer at once, and so does each interim utterance (the one in progress so far, every
``interim_ms``, for a live caption). Positions (start, keep window) go from stream time to
meeting time here. With ``SEALSCRIBE_VAD=energy`` the segmenter's energy rule decides alone
(no detector, no arbiter).
"""

from __future__ import annotations

import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from pipeline import metrics
from pipeline.audio.segmenter import Segmenter, SegmenterConfig, Utterance
from pipeline.audio.vad import FRAME_MS, PAD_MS, SileroSpeech, segmenter_config
from pipeline.capture.crosstalk import CrosstalkArbiter, LiveTrack
from pipeline.capture.sealer import Sealer
from pipeline.config import Settings
from pipeline.models import AudioSegment

__all__ = ["BATCH_FRAMES", "SAMPLE_RATE", "TrackCapture", "live_config"]

SAMPLE_RATE = 16000
#: frames resampled and segmented together: 5 x 20 ms costs a third of 5 separate calls
#: and delays an utterance's end by at most 80 ms
BATCH_FRAMES = 5


def live_config(settings: Settings, silero: bool = True) -> SegmenterConfig:
    """How live audio (a track, a room's mix) is cut: the live maximum, the pause that ends
    an utterance, interims; with Silero's 32 ms frames and look-back, and after the last
    speech frame at most the pause that ended it."""
    live = {
        "max_utterance_ms": settings.max_segment_ms,
        "end_silence_ms": settings.end_silence_ms,
        "interim_ms": settings.interim_ms,
    }
    if silero:
        return segmenter_config(pad_ms=min(PAD_MS, settings.end_silence_ms), **live)
    return SegmenterConfig(**live)


class TrackCapture:
    """One participant's audio track, consumed until it ends or is cancelled."""

    def __init__(
        self,
        sealer: Sealer,
        participant: str,
        track: MediaStreamTrack,
        config: SegmenterConfig | None = None,
        crosstalk: CrosstalkArbiter | None = None,
    ) -> None:
        self.sealer = sealer
        self.participant = participant
        self.track = track
        settings = sealer.rt.settings
        #: Silero decides which frames are speech (32 ms frames); else the energy rule
        self.silero = settings.vad == "silero"
        self.crosstalk = crosstalk if self.silero else None
        if config is None:
            config = live_config(settings, self.silero)
        self.config = config
        if self.silero and self.config.frame_ms != FRAME_MS:
            raise ValueError(f"the Silero detector decides per {FRAME_MS} ms frame")
        self._voice: LiveTrack | None = None
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._segmenter: Segmenter | None = None
        self._origin_ms = 0
        #: the earliest meeting time a frame arrived at, less the stream before it: where
        #: the stream started, for aligning it with the meeting's other tracks (the first
        #: frame alone can come hundreds of ms late, followed by a burst that catches up)
        self._aligned_ms = 0.0
        self._received_ms = 0.0
        self._started = 0.0  # time.monotonic() at _origin_ms
        self._pending: list[np.ndarray] = []  # decoded frames not yet resampled
        self._shape: tuple[str, str, int] | None = None

    def _meeting_ms(self) -> int:
        return int((time.time() - self.sealer.policy.meeting.created) * 1000)

    async def run(self) -> None:
        stats = self.sealer.stats
        policy = self.sealer.policy
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
                    self._drop_voice()  # and the arbiter forgets the track
                    self._pending.clear()
                    continue
                if not isinstance(frame, av.AudioFrame):
                    continue
                if self._segmenter is None:
                    self._segmenter = Segmenter(self.config)
                    self._origin_ms = self._meeting_ms()
                    self._aligned_ms, self._received_ms = float(self._origin_ms), 0.0
                    self._started = time.monotonic()
                    self._shape = None
                    self._drop_voice()
                    if self.silero:
                        self._voice = LiveTrack(
                            SileroSpeech(),
                            self.crosstalk,
                            self.participant,
                            first_frame=round(self._origin_ms / FRAME_MS),
                        )
                shape = (frame.format.name, frame.layout.name, frame.sample_rate)
                if shape != self._shape:
                    await self._process()  # one batch holds frames of one shape only
                    self._shape = shape
                frames_on.inc()
                if self._voice is not None and self._voice.arbiter is not None:
                    self._align(frame)
                self._pending.append(frame.to_ndarray())
                if len(self._pending) >= BATCH_FRAMES:
                    await self._process()
        finally:
            try:
                await self._process()
                await self._flush()
            finally:
                self._drop_voice()

    def _align(self, frame: av.AudioFrame) -> None:
        """Refine where the stream started from this frame's arrival; the arbiter compares
        the track with the others in meeting time, to within a few tens of ms."""
        arrived = self._origin_ms + (time.monotonic() - self._started) * 1000
        self._aligned_ms = min(self._aligned_ms, arrived - self._received_ms)
        self._received_ms += frame.samples * 1000 / frame.sample_rate
        if self._voice is not None:
            self._voice.rebase(round(self._aligned_ms / FRAME_MS))

    def _drop_voice(self) -> None:
        voice, self._voice = self._voice, None
        if voice is not None:
            voice.close()

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
            pcm = out.to_ndarray().tobytes()
            if self._voice is None:
                utterances = self._segmenter.feed(pcm)
            else:
                pcm, speech = self._voice.feed(pcm)
                utterances = self._segmenter.feed(pcm, speech)
            for utt in utterances:
                await self._submit(utt)

    async def _flush(self) -> None:
        segmenter, self._segmenter = self._segmenter, None
        voice, self._voice = self._voice, None
        if segmenter is None or not self.sealer.policy.transcribes(self.participant):
            if voice is not None:
                voice.close()
            return
        if voice is not None:
            pcm, speech = voice.flush()
            for utt in segmenter.feed(pcm, speech):
                if not utt.interim:
                    await self._submit(utt)
        for utt in segmenter.flush():
            await self._submit(utt)

    def _meeting(self, stream_ms: int | None) -> int | None:
        return None if stream_ms is None else self._origin_ms + stream_ms

    async def _submit(self, utt: Utterance) -> None:
        # A live utterance (each piece of a cut one) is numbered by its start in meeting
        # time; its interims share that start, so they sit at its final's position.
        start = self._origin_ms + utt.start_ms
        segment = AudioSegment(
            self.participant,
            start,
            start,
            SAMPLE_RATE,
            utt.pcm,
            keep_from_ms=self._meeting(utt.keep_from_ms),
            keep_to_ms=self._meeting(utt.keep_to_ms),
            part=utt.interim,
        )
        if utt.interim:
            await self.sealer.submit_interim(segment)
        else:
            await self.sealer.submit(segment)
