"""What the fault tests share: a whole sealscribe on loopback whose processes they kill and
restart (:class:`tests.harness.stack.LocalStack`), and speech whose every word they can
account for."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from pipeline.capture.file import capture_segments
from pipeline.models import AudioSegment, Meeting
from pipeline.services.transcripts import read_transcript
from tests.harness.stack import LocalStack
from tests.privacy.speech import PHRASES, RATE, require_espeak, speak

__all__ = ["PHRASES", "heard", "running", "submit_spoken"]


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
