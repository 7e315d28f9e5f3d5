"""Redis restarted mid-meeting: capture holds what it sealed meanwhile, and loses none of it.

A participant speaks over WebRTC (WHIP) into ``sealscribe serve``; Redis is killed between
her utterances and comes back (from its append-only file) after she has said three more.
Capture keeps those sealed, in memory, in a backlog bounded in bytes, and stores them once
Redis answers; the worker, reconnected, transcribes them. Every phrase must reach the
transcript, and capture must report no drops. (Drops beyond the bound are counted: unit test
``tests/unit/test_capture_backlog.py``.) Fails with the ``capture-drops-on-outage`` fault.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import redis

from pipeline.models import Meeting
from tests.faults.harness import PHRASES, heard, running
from tests.harness.processes import wait_until
from tests.privacy.deployment import Api
from tests.privacy.live import SPEED, asettled, participant
from tests.privacy.speech import speak

BEFORE = ["Flintwick", "Copperfield"]
DURING = ["Kensington", "Pemberton", "Wimbledon"]


def capture_counts(api_url: str) -> dict[str, float] | None:
    """What capture in the API process sealed, stored and dropped (its /metrics); None while
    the metrics cannot be read (503 while Redis is unreachable)."""
    answer = httpx.get(f"{api_url}/metrics", timeout=10)
    if answer.status_code != 200:
        return None
    text = answer.text
    found = {
        "sealed": r"sealscribe_segments_sealed_total",
        "stored": r"sealscribe_segments_queued_total",
        "dropped": r'sealscribe_segments_dropped_total\{reason="backlog"\}',
    }
    counts = {}
    for name, pattern in found.items():
        value = re.search(rf"^{pattern} (\S+)$", text, re.M)
        counts[name] = float(value.group(1)) if value else 0.0
    return counts


def accounted_for(api_url: str) -> bool:
    counts = capture_counts(api_url)
    return counts is not None and counts["sealed"] == counts["stored"] + counts["dropped"]


def test_a_redis_restart_mid_meeting_loses_no_segment(tmp_path: Path) -> None:
    with running(tmp_path, durable_redis=True) as stack:
        tenant = stack.tenant("faults")
        api = Api(stack.api_url, tenant.token)
        meeting_id = api.meeting(transcription=True)
        r = redis.Redis.from_url(stack.redis_url)
        redis_server = stack.redis
        assert redis_server is not None

        async def meeting() -> None:
            async with participant(api, meeting_id, "alice") as alice:
                for name in BEFORE:
                    await alice.says(PHRASES[name])
                    await asyncio.sleep(0.8 / SPEED)  # a pause: each phrase one utterance
                await asettled(r, meeting_id, transcripts=len(BEFORE))
                redis_server.kill()
                for name in DURING:
                    await alice.says(PHRASES[name])
                    await asyncio.sleep(0.8 / SPEED)
                await asyncio.sleep(1.0)  # the last utterance ends and is sealed
                await asyncio.to_thread(redis_server.start)

        for name in BEFORE + DURING:
            speak(PHRASES[name])  # spoken once, before the clock matters
        asyncio.run(meeting())
        wait_until(
            lambda: accounted_for(stack.api_url), 60, "every sealed segment stored or dropped"
        )
        counts = capture_counts(stack.api_url)
        assert counts is not None and counts["dropped"] == 0, counts
        assert counts["stored"] == counts["sealed"] >= len(BEFORE + DURING), counts
        asyncio.run(asettled(r, meeting_id, transcripts=int(counts["stored"])))
        the_meeting = stack.rt.store.meetings.get(meeting_id)
        assert isinstance(the_meeting, Meeting)
        assert heard(stack, the_meeting) == set(BEFORE + DURING)
        api.close()
        r.close()
