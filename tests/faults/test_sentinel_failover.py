"""The store's primary killed mid-meeting, Redis Sentinel promoting its replica: capture holds
what it sealed meanwhile, every process follows the new primary, and nothing is lost.

The stack runs on ``redis+sentinel://`` (a primary, one replica, three sentinels: real
``redis-server`` processes, :mod:`tests.harness.sentinel`), the broker included unless CI's
broker stage puts it on RabbitMQ. A participant speaks over WebRTC (WHIP) into
``sealscribe serve``; after her first two utterances are transcribed, the primary is killed
(SIGKILL, as a lost host) and she says three more while the sentinels agree on the replica.
Capture keeps those sealed in its bounded backlog and stores them on the new primary; the
worker takes them from it. Every phrase must reach the transcript, none dropped. Fails with
the ``store-pins-primary`` fault (a client that never asks the sentinels again).

What replication can lose is not tested here but measured (``bench/failover.py``): a write the
old primary acknowledged in the last moment before it died, not yet sent to the replica.
``SEALSCRIBE_REDIS_WAIT_REPLICAS`` closes that window; see docs/scaling.md.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pipeline.models import Meeting
from pipeline.store.connection import connect
from tests.faults.harness import PHRASES, heard, running
from tests.faults.test_redis_restart import accounted_for, capture_counts
from tests.harness.processes import wait_until
from tests.harness.sentinel import sentinel_group
from tests.privacy.deployment import Api
from tests.privacy.live import SPEED, asettled, participant
from tests.privacy.speech import speak

BEFORE = ["Flintwick", "Copperfield"]
DURING = ["Kensington", "Pemberton", "Wimbledon"]


def test_a_primary_failover_mid_meeting_loses_no_segment(tmp_path: Path) -> None:
    with (
        sentinel_group(tmp_path / "redis") as group,
        running(tmp_path / "stack", redis_url=group.url) as stack,
    ):
        tenant = stack.tenant("faults")
        api = Api(stack.api_url, tenant.token)
        meeting_id = api.meeting(transcription=True)
        r = connect(group.url)  # the test's own reads follow the primary too
        old = group.primary.port
        failover_s: list[float] = []

        async def meeting() -> None:
            async with participant(api, meeting_id, "alice") as alice:
                for name in BEFORE:
                    await alice.says(PHRASES[name])
                    await asyncio.sleep(0.8 / SPEED)  # a pause: each phrase one utterance
                await asettled(r, meeting_id, transcripts=len(BEFORE))
                group.primary.kill()
                for name in DURING:
                    await alice.says(PHRASES[name])
                    await asyncio.sleep(0.8 / SPEED)
                await asyncio.sleep(1.0)  # the last utterance ends and is sealed
                failover_s.append(await asyncio.to_thread(group.wait_failover, old))

        for name in BEFORE + DURING:
            speak(PHRASES[name])  # spoken once, before the clock matters
        asyncio.run(meeting())
        assert group.primary_port() == group.replica.port
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
