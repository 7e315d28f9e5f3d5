"""One meeting as live capture sees it: its participants' tracks, labelled, feeding one
:class:`~pipeline.capture.session.CaptureSession` (one policy, one data key, one bounded
backlog, one writer).

Both live ways in use it: the bot's connector (a Janus room) and the API's WHIP endpoint hand
their participants' tracks to a :class:`MeetingRoom`, which labels each participant and runs a
:class:`~pipeline.capture.track.TrackCapture` per track.

A room holds its meeting's :class:`~pipeline.capture.crosstalk.CrosstalkArbiter`: the tracks
of one room are compared frame by frame, and a frame that carries another participant's
louder voice is not its track's speech (``SEALSCRIBE_CROSSTALK``). Only the tracks of one
process can be compared, which is why a meeting's WHIP sessions are sent to one process
(:mod:`pipeline.capture.whip`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import unicodedata
from collections.abc import Callable
from types import TracebackType

from aiortc.mediastreams import MediaStreamTrack

from pipeline.capture.crosstalk import CrosstalkArbiter
from pipeline.capture.mix import MixCapture, MixTiming
from pipeline.capture.policy import MeetingPolicy
from pipeline.capture.session import CaptureSession
from pipeline.capture.sink import CaptureStats
from pipeline.capture.speakers import SpeakerTimeline
from pipeline.capture.track import TrackCapture
from pipeline.errors import OURS
from pipeline.models import SPEAKERS_SEP, Meeting
from pipeline.runtime import Runtime
from pipeline.store.meetings import SPEAKERS_TALKING

__all__ = ["MeetingRoom", "participant_label"]

log = logging.getLogger(__name__)

MAX_LABEL = 64


def participant_label(name: str | None) -> str:
    """A display name made safe to use as a participant id: printable, one line, bounded,
    and never a speaker group (see :func:`pipeline.ids.speaker_group`)."""
    text = "".join(
        c if unicodedata.category(c)[0] not in "CZ" or c == " " else " " for c in (name or "")
    )
    text = " ".join(text.split())
    # the speaker separator (" + ") is the room's to write: a name never contains it
    while SPEAKERS_SEP in text:
        text = text.replace(SPEAKERS_SEP, " & ")
    return text[:MAX_LABEL].strip() or "participant"


class MeetingRoom:
    def __init__(
        self,
        rt: Runtime,
        meeting: Meeting,
        on_participants: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.rt = rt
        self.capture = CaptureSession(rt, meeting)
        self.on_participants = on_participants
        self.on_joined: Callable[[], None] | None = None
        self._tracks: dict[str, asyncio.Task[None]] = {}
        #: a mixed-audio room: who talked when, its one mixed track, and who is present
        self.timeline: SpeakerTimeline | None = None
        self._mix: asyncio.Task[None] | None = None
        self._present: list[str] = []
        #: the meeting's tracks compared for crosstalk (levels and speech flags, no audio)
        self.crosstalk = CrosstalkArbiter() if rt.settings.crosstalk else None

    @property
    def policy(self) -> MeetingPolicy:
        return self.capture.policy

    @property
    def stats(self) -> CaptureStats:
        return self.capture.stats

    @property
    def meeting_id(self) -> str:
        return self.policy.meeting.id

    @property
    def participants(self) -> list[str]:
        return sorted({*self._tracks, *self._present})

    async def start(self) -> None:
        await self.capture.start()

    async def __aenter__(self) -> MeetingRoom:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- ParticipantSink -----------------------------------------------------------------

    def joined(self) -> None:
        if self.on_joined is not None:
            self.on_joined()

    def track_added(self, participant: str, track: MediaStreamTrack) -> str:
        """Start capturing ``track``; returns the label it is stored under."""
        base = label = participant_label(participant)
        n = 2
        while label in self._tracks:
            label = f"{base[: MAX_LABEL - 5]} ({n})"
            n += 1
        capture = TrackCapture(self.capture.sealer, label, track, crosstalk=self.crosstalk)
        task = asyncio.create_task(capture.run())
        self._tracks[label] = task
        task.add_done_callback(functools.partial(self._track_done, label))
        self._participants_changed()
        return label

    def track_removed(self, participant: str) -> None:
        task = self._tracks.get(participant_label(participant))
        if task is not None:
            task.cancel()

    # -- MixedSink: a room that gives one mixed track and a speaker signal ------------------

    def mix_added(self, track: MediaStreamTrack, window_ms: int) -> None:
        """Capture the room's mix, attributed by its speaker signal (:meth:`talking`)."""
        if self._mix is not None:
            self._mix.cancel()
        timing = MixTiming(window_ms)
        if self.timeline is None or self.timeline.lag_ms != timing.lag_ms:
            self.timeline = SpeakerTimeline(timing.lag_ms)
        capture = MixCapture(self.capture.sealer, track, self.timeline, timing)
        self._mix = task = asyncio.create_task(capture.run())
        task.add_done_callback(functools.partial(self._track_done, None))
        try:
            self.rt.store.meetings.set_speaker_source(self.meeting_id, SPEAKERS_TALKING)
        except OURS:
            log.warning("could not record meeting %s as a mixed room", self.meeting_id)

    def mix_removed(self) -> None:
        if self._mix is not None:
            self._mix.cancel()

    def talking(self, participant: str, talking: bool) -> None:
        if self.timeline is None:
            self.timeline = SpeakerTimeline(MixTiming().lag_ms)
        now = int((time.time() - self.policy.meeting.created) * 1000)
        label = participant_label(participant)
        if talking:
            self.timeline.talking(label, now)
        else:
            self.timeline.stopped(label, now)

    def present(self, participants: list[str]) -> None:
        present = sorted({participant_label(p) for p in participants})
        if present != self._present:
            self._present = present
            self._participants_changed()

    def _track_done(self, label: str | None, task: asyncio.Task[None]) -> None:
        if label is None and self._mix is task:
            self._mix = None
        elif label is not None and self._tracks.get(label) is task:
            del self._tracks[label]
            if self.crosstalk is not None:  # (TrackCapture leaves it too; a label is reused)
                self.crosstalk.remove(label)
            self._participants_changed()
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "capture of a participant in meeting %s failed: %s",
                self.meeting_id,
                type(task.exception()).__name__,
            )

    def _participants_changed(self) -> None:
        if self.on_participants is not None:
            self.on_participants(self.participants)

    async def close(self, drain_timeout: float = 10.0) -> None:
        """Stop every track (utterances in progress are flushed, if the policy allows),
        store what is sealed (bounded wait), then stop watching."""
        tasks = list(self._tracks.values()) + ([self._mix] if self._mix is not None else [])
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.capture.close(drain_timeout)
