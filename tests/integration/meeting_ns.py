"""What the Janus meeting tests share on top of :func:`tests.harness.stack.meeting_stack`:
waiting on the bot, participants speaking from memory, and the sealed audio and transcripts
a meeting stored.

The namespace stack itself (Janus, a private Redis, the worker and the bot service) is in
:mod:`tests.harness.stack`; these helpers run inside its namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from keys.types import KeyUse, Purpose
from pipeline import services
from pipeline.audio.decode import decode_file
from pipeline.datakeys import ParticipantKeys
from pipeline.models import AudioSegment, BotState, BotStatus, Meeting, TranscriptSegment
from pipeline.publish import PcmTrack
from pipeline.runtime import Runtime
from pipeline.sealing import open_audio
from pipeline.services.bots import bot_status, join_meeting, leave_meeting
from tests.integration.publishers import MixedParticipant, Publisher

__all__ = [
    "SECOND",
    "SealedAudio",
    "StateTrail",
    "at_ms",
    "drained",
    "hears",
    "leave_all",
    "mixed_meeting",
    "recall_bot",
    "run",
    "send_bot",
    "speaking",
    "talk",
    "until",
]

T = TypeVar("T")


# -- waiting on the bot --------------------------------------------------------------------


async def until(
    predicate: Callable[[], bool], what: str, timeout: float = 20.0, poll: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(poll)


async def send_bot(rt: Runtime, meeting_id: str, url: str, timeout: float = 20.0) -> BotStatus:
    """Ask for a bot (as the API and CLI do) and wait until it is in the meeting."""
    join_meeting(rt, meeting_id, url)
    status = bot_status(rt, meeting_id)
    deadline = time.monotonic() + timeout
    while status.state is not BotState.IN_MEETING:
        if status.state.final or time.monotonic() > deadline:
            raise AssertionError(f"the bot did not get into {url}: {status}")
        await asyncio.sleep(0.1)
        status = bot_status(rt, meeting_id)
    return status


async def recall_bot(rt: Runtime, meeting_id: str, timeout: float = 20.0) -> BotStatus:
    """Call the bot back and wait until it left (it stores what it sealed before that)."""
    leave_meeting(rt, meeting_id)
    status = bot_status(rt, meeting_id)
    deadline = time.monotonic() + timeout
    while not status.state.final:
        if time.monotonic() > deadline:
            raise AssertionError(f"the bot did not leave: {status}")
        await asyncio.sleep(0.1)
        status = bot_status(rt, meeting_id)
    assert status.state is BotState.LEFT, status
    return status


class StateTrail:
    """Records every (state, reason) a meeting's bot goes through, polling every 50 ms
    (each backoff step lasts at least 0.5 s, so none is missed)."""

    def __init__(self, rt: Runtime, meeting_id: str) -> None:
        self.rt, self.meeting_id = rt, meeting_id
        self.seen: list[tuple[BotState, str]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> StateTrail:
        self._task = asyncio.create_task(self._follow())
        return self

    async def _follow(self) -> None:
        while True:
            status = self.rt.store.bots.get(self.meeting_id)
            if status is not None and (
                not self.seen or self.seen[-1] != (status.state, status.reason)
            ):
                self.seen.append((status.state, status.reason))
            await asyncio.sleep(0.05)

    @property
    def last(self) -> tuple[BotState, str] | None:
        return self.seen[-1] if self.seen else None

    def states(self) -> list[BotState]:
        return [state for state, _ in self.seen]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# -- participants, stored audio and transcripts --------------------------------------------

JFK = Path(__file__).resolve().parents[2] / "pipeline" / "demo_data" / "jfk.ogg"
SECOND = 32000  # bytes of 16 kHz s16 mono


def run(scenario: Coroutine[Any, Any, T], timeout: float = 150.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await scenario

    return asyncio.run(bounded())


def talk(seconds: float) -> bytes:
    """About ``seconds`` of talking: 2.5 s pieces of the jfk clip, each followed by a second
    of silence, so that an utterance ends (and is stored) every 3.5 s."""
    jfk = decode_file(JFK, 60)
    piece = int(2.5 * SECOND) // 2 * 2
    pieces = [jfk[i : i + piece] + bytes(SECOND) for i in range(0, len(jfk) - piece + 1, piece)]
    out = b""
    while len(out) < seconds * SECOND:
        out += b"".join(pieces)
    return out


def at_ms(meeting: Meeting, t: float) -> int:
    """A wall-clock time as milliseconds from the meeting's start (segments' time base)."""
    return int((t - meeting.created) * 1000)


class SealedAudio:
    """Opens the sealed audio segments a meeting has stored (the test holds the tenant's
    key, as the worker would)."""

    def __init__(self, rt: Runtime, meeting: Meeting) -> None:
        self.rt, self.meeting = rt, meeting
        self._keys = ParticipantKeys(rt, meeting, KeyUse.AUDIO, Purpose.TRANSCRIBE)

    def segments(self) -> list[AudioSegment]:
        out = []
        for sid in self.rt.store.segments.pending_audio(self.meeting.id):
            sealed = self.rt.store.segments.get_audio(self.meeting.id, sid)
            if sealed is None:
                continue
            segment = open_audio(self._keys(sealed.participant_id), self.meeting.tenant_id, sealed)
            middle = len(segment.pcm) // 2 // 2 * 2
            assert segment.pcm[middle : middle + 64] not in sealed.sealed  # no samples in clear
            out.append(segment)
        return out

    def of(self, participant: str) -> list[AudioSegment]:
        return [s for s in self.segments() if s.participant_id == participant]


def drained(rt: Runtime, meeting_id: str, timeout: float = 120.0) -> list[TranscriptSegment]:
    """Wait until the worker has worked through the meeting's audio; its transcript."""
    deadline = time.monotonic() + timeout
    while rt.store.segments.pending_count(meeting_id):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{rt.store.segments.pending_count(meeting_id)} segments "
                f"still pending after {timeout:g} s"
            )
        time.sleep(0.2)
    return services.read_transcript(rt, meeting_id)


async def speaking(
    url: str, name: str, pcm: bytes, speed: float = 1.0
) -> tuple[Publisher, PcmTrack]:
    """A participant joined and talking (from memory); silent once ``pcm`` is said."""
    publisher = Publisher(url, name)
    try:
        return publisher, await publisher.publish_pcm(pcm, speed=speed)
    except BaseException:
        await leave_all([publisher])
        raise


async def leave_all(publishers: list[Publisher]) -> None:
    for publisher in publishers:
        with contextlib.suppress(Exception):
            await publisher.leave()


def hears(rt: Runtime, meeting_id: str, *names: str) -> bool:
    status = bot_status(rt, meeting_id)
    return status.state is BotState.IN_MEETING and status.participants == tuple(sorted(names))


async def mixed_meeting(rt: Runtime, meeting_id: str, url: str, pcm: dict[str, bytes]) -> float:
    """Send the bot into the AudioBridge room ``url``, then have one participant per entry of
    ``pcm`` join and say it, all starting together once the bot sees them; leave, recall the
    bot. Returns when they started (``time.time()``)."""
    await send_bot(rt, meeting_id, url)
    gate = asyncio.Event()
    people = [MixedParticipant(url, who) for who in sorted(pcm)]
    try:
        sent = [await p.join(pcm[p.display], gate) for p in people]
        await until(
            lambda: set(bot_status(rt, meeting_id).participants) >= set(pcm),
            f"the bot seeing {', '.join(sorted(pcm))} in the room",
        )
        started = time.time()
        gate.set()
        await asyncio.gather(*(t.finished.wait() for t in sent))
    finally:
        for p in people:
            await p.leave()
    await recall_bot(rt, meeting_id)
    return started
