"""Helpers for live meetings: participants publishing over WHIP, and waiting for the worker."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis

from pipeline.publish import WhipPublisher
from pipeline.store import schema
from tests.privacy.deployment import Api
from tests.privacy.speech import Speaker

__all__ = ["SPEED", "asettled", "counts", "participant", "settled", "words"]

#: participants speak twice as fast as real time: the audio is unchanged, the suite quicker
SPEED = 2.0


@asynccontextmanager
async def participant(
    api: Api, meeting_id: str, name: str, speed: float = SPEED
) -> AsyncIterator[Speaker]:
    """``name`` in the meeting over real WebRTC (WHIP, Opus) for the length of the block."""
    speaker = Speaker(speed)
    assert api.token is not None
    publisher = WhipPublisher(api.whip(meeting_id), api.token, speaker, name)
    await publisher.start()
    speaker.session = publisher.resource
    try:
        yield speaker
        await asyncio.sleep(0.6 / speed)  # trailing silence: the last utterance ends
    finally:
        await publisher.stop()


def counts(r: redis.Redis, meeting_id: str) -> tuple[int, int]:
    """(sealed audio segments pending, sealed transcript segments) of a meeting."""
    pipe = r.pipeline(transaction=False)
    pipe.zcard(schema.meeting_audio(meeting_id))
    pipe.zcard(schema.meeting_transcript(meeting_id))
    pending, done = pipe.execute()
    return int(pending), int(done)


def settled(
    r: redis.Redis,
    meeting_id: str,
    transcripts: int = 1,
    pending: int = 0,
    timeout: float = 90,
    quiet: float = 0.8,
) -> tuple[int, int]:
    """Wait until the meeting has ``pending`` audio segments waiting and at least
    ``transcripts`` transcript segments, unchanged for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = counts(r, meeting_id), time.monotonic()
    while True:
        now = counts(r, meeting_id)
        if now != last:
            last, since = now, time.monotonic()
        elif now[0] == pending and now[1] >= transcripts and time.monotonic() - since >= quiet:
            return now
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"meeting {meeting_id}: {now[0]} audio segments pending, "
                f"{now[1]} transcribed after {timeout:g} s (wanted {pending} "
                f"and at least {transcripts})"
            )
        time.sleep(0.1)


async def asettled(
    r: redis.Redis, meeting_id: str, transcripts: int = 1, pending: int = 0, timeout: float = 90
) -> tuple[int, int]:
    return await asyncio.to_thread(settled, r, meeting_id, transcripts, pending, timeout)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))
