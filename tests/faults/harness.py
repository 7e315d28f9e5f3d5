"""What the fault tests share: a whole sealscribe on loopback whose processes they kill and
restart (:class:`tests.harness.stack.LocalStack`), and speech whose every word they can
account for."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import redis

from pipeline.capture.file import capture_segments
from pipeline.models import AudioSegment, Meeting
from pipeline.services.transcripts import read_transcript
from tests.harness.processes import wait_until
from tests.harness.stack import LocalStack
from tests.privacy.deployment import Api
from tests.privacy.live import SPEED, asettled, participant
from tests.privacy.speech import PHRASES, RATE, require_espeak, speak

__all__ = [
    "PHRASES",
    "capture_counts",
    "heard",
    "outage_mid_meeting",
    "running",
    "submit_spoken",
]

#: said before the store goes away (and transcribed), and while it is away
BEFORE = ["Flintwick", "Copperfield"]
DURING = ["Kensington", "Pemberton", "Wimbledon"]


@contextlib.contextmanager
def running(
    root: Path, durable_redis: bool = False, redis_url: str | None = None, **env: str
) -> Iterator[LocalStack]:
    """A started stack (on its own redis-server, or on ``redis_url``); this process's
    settings and Celery client point at it."""
    require_espeak()  # every fault test speaks; without it they would prove nothing
    stack = LocalStack(root, redis_url=redis_url, durable_redis=durable_redis, env=env)
    with stack.running():
        yield stack


def submit_spoken(
    stack: LocalStack,
    meeting: Meeting,
    texts: list[str],
    participant: str = "alice",
    first: int = 0,
    repeat: int = 1,
) -> None:
    """Seal each text, spoken ``repeat`` times, as one segment and queue it through capture
    (the path a recorded file takes), at 10 s intervals of meeting time from segment
    ``first`` on."""
    segments = [
        AudioSegment(participant, i, i * 10_000, RATE, speak(text) * repeat)
        for i, text in enumerate(texts, first)
    ]
    capture_segments(stack.rt, meeting, segments)


def heard(stack: LocalStack, meeting: Meeting) -> set[str]:
    """The canary words in the meeting's transcript, opened for the customer."""
    text = " ".join(segment.text for segment in read_transcript(stack.rt, meeting.id)).lower()
    return {canary for canary in PHRASES if canary.lower() in text}


def capture_counts(api_url: str) -> dict[str, float] | None:
    """What capture in the API process sealed, stored and dropped (its /metrics); None while
    the metrics cannot be read (503 while Redis is unreachable)."""
    answer = httpx.get(f"{api_url}/metrics", timeout=10)
    if answer.status_code != 200:
        return None
    found = {
        "sealed": r"sealscribe_segments_sealed_total",
        "stored": r"sealscribe_segments_queued_total",
        "dropped": r'sealscribe_segments_dropped_total\{reason="backlog"\}',
    }
    counts = {}
    for name, pattern in found.items():
        value = re.search(rf"^{pattern} (\S+)$", answer.text, re.M)
        counts[name] = float(value.group(1)) if value else 0.0
    return counts


def _accounted_for(api_url: str) -> bool:
    counts = capture_counts(api_url)
    return counts is not None and counts["sealed"] == counts["stored"] + counts["dropped"]


def outage_mid_meeting(
    stack: LocalStack, r: redis.Redis, begin: Callable[[], None], end: Callable[[], object]
) -> None:
    """A participant speaks over WebRTC (WHIP) into the stack's API: :data:`BEFORE`, which
    is transcribed; then ``begin()`` (the store goes away) and she says :data:`DURING`; then
    ``end()`` (it is back; run in a thread). Every phrase must reach the transcript, every
    segment capture sealed must be stored, none dropped. ``r`` reads the store throughout."""
    tenant = stack.tenant("faults")
    api = Api(stack.api_url, tenant.token)
    meeting_id = api.meeting(transcription=True)

    async def meeting() -> None:
        async with participant(api, meeting_id, "alice") as alice:
            for name in BEFORE:
                await alice.says(PHRASES[name])
                await asyncio.sleep(0.8 / SPEED)  # a pause: each phrase one utterance
            await asettled(r, meeting_id, transcripts=len(BEFORE))
            begin()
            for name in DURING:
                await alice.says(PHRASES[name])
                await asyncio.sleep(0.8 / SPEED)
            await asyncio.sleep(1.0)  # the last utterance ends and is sealed
            await asyncio.to_thread(end)

    for name in BEFORE + DURING:
        speak(PHRASES[name])  # spoken once, before the clock matters
    asyncio.run(meeting())
    wait_until(lambda: _accounted_for(stack.api_url), 60, "every sealed segment stored or dropped")
    counts = capture_counts(stack.api_url)
    assert counts is not None and counts["dropped"] == 0, counts
    assert counts["stored"] == counts["sealed"] >= len(BEFORE + DURING), counts
    asyncio.run(asettled(r, meeting_id, transcripts=int(counts["stored"])))
    the_meeting = stack.rt.store.meetings.get(meeting_id)
    assert isinstance(the_meeting, Meeting)
    assert heard(stack, the_meeting) == set(BEFORE + DURING)
    api.close()
