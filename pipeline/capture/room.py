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
import unicodedata
from collections.abc import Callable
from types import TracebackType

from aiortc.mediastreams import MediaStreamTrack

from pipeline.capture.crosstalk import CrosstalkArbiter
from pipeline.capture.policy import MeetingPolicy
from pipeline.capture.session import CaptureSession
from pipeline.capture.sink import CaptureStats
from pipeline.capture.track import TrackCapture
from pipeline.models import Meeting
from pipeline.runtime import Runtime

__all__ = ["MeetingRoom", "participant_label"]

log = logging.getLogger(__name__)

MAX_LABEL = 64


def participant_label(name: str | None) -> str:
    """A display name made safe to use as a participant id: printable, one line, bounded."""
    text = "".join(
        c if unicodedata.category(c)[0] not in "CZ" or c == " " else " " for c in (name or "")
    )
    text = " ".join(text.split())[:MAX_LABEL].strip()
    return text or "participant"


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
        return sorted(self._tracks)

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

    def _track_done(self, label: str, task: asyncio.Task[None]) -> None:
        if self._tracks.get(label) is task:
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
        tasks = list(self._tracks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.capture.close(drain_timeout)
