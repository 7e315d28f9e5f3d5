"""Who was talking when in a mixed-audio room: the speaker timeline.

A room that gives the bot one mixed track (a Janus AudioBridge, a platform bot that hears the
room as one stream) also gives a separate signal of who is talking: AudioBridge's
``talking`` / ``stopped-talking`` events, an active-speaker indicator a browser bot reads,
or nothing at all. Whatever the source, the connector feeds it here as "P started / stopped
talking" at the meeting time the signal arrived, and the mix capture
(:mod:`pipeline.capture.mix`) asks which participants were talking at a moment of the mix.

A signal arrives late: AudioBridge decides once per window of ``audio_active_packets`` packets
(20 ms each) whether a participant's average level was above ``audio_level_average``, so a
change is reported between 0 and two windows after it happened. The timeline moves every
reported change back by ``lag_ms`` (one window: the middle of that range); what remains is
an error of about one window either way, which the mix capture absorbs (it keeps the label
of the utterance in progress across a short gap, and guards opted-out speech by more than
the error).

This module holds names and times only, never audio; it is pure (no clock of its own).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["SpeakerTimeline"]


@dataclass
class _Intervals:
    """One participant's talking intervals, ``[start, end)`` in meeting ms (end None: open)."""

    starts: list[int] = field(default_factory=list)
    ends: list[int | None] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return bool(self.ends) and self.ends[-1] is None

    def begin(self, at: int) -> None:
        if self.open:
            return
        if self.ends and self.ends[-1] is not None and at <= self.ends[-1]:
            self.ends[-1] = None  # resumed before the last interval was over: one interval
            return
        self.starts.append(at)
        self.ends.append(None)

    def finish(self, at: int) -> None:
        if self.open:
            self.ends[-1] = max(at, self.starts[-1])

    def near(self, lo: int, hi: int) -> bool:
        """Whether an interval meets ``[lo, hi)``."""
        i = bisect.bisect_left(self.starts, hi) - 1  # the last interval starting before hi
        if i < 0:
            return False
        end = self.ends[i]
        return end is None or end > lo

    def prune(self, before: int) -> None:
        """Forget intervals that ended before ``before``."""
        keep = 0
        while keep < len(self.ends) and (end := self.ends[keep]) is not None and end < before:
            keep += 1
        del self.starts[:keep], self.ends[:keep]


class SpeakerTimeline:
    """Talking intervals per participant, in meeting ms, fed by a room's speaker signal.

    Args:
        lag_ms: how late the signal reports a change, on average; each reported time is
            moved back by it.
    """

    def __init__(self, lag_ms: int = 0) -> None:
        self.lag_ms = lag_ms
        self._people: dict[str, _Intervals] = {}
        #: whether the room has reported anyone talking yet (a room without a speaker
        #: signal never does: nothing of its mix can be attributed)
        self.heard = False

    def talking(self, participant: str, at_ms: int) -> None:
        """``participant`` was reported talking at ``at_ms`` (when the report arrived)."""
        self.heard = True
        self._people.setdefault(participant, _Intervals()).begin(at_ms - self.lag_ms)

    def stopped(self, participant: str, at_ms: int) -> None:
        """``participant`` was reported no longer talking (or left) at ``at_ms``."""
        intervals = self._people.get(participant)
        if intervals is not None:
            intervals.finish(at_ms - self.lag_ms)

    def talkers(self, at_ms: int, reach_ms: int = 0) -> frozenset[str]:
        """Who was talking within ``reach_ms`` of ``at_ms``."""
        lo, hi = at_ms - reach_ms, at_ms + reach_ms + 1
        return frozenset(p for p, iv in self._people.items() if iv.near(lo, hi))

    def prune(self, before_ms: int) -> None:
        """Forget what ended before ``before_ms`` (the mix capture is past it)."""
        for intervals in self._people.values():
            intervals.prune(before_ms)
