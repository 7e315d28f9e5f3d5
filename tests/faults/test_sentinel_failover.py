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

from pathlib import Path

from pipeline.store.connection import connect
from tests.faults.harness import outage_mid_meeting, running
from tests.harness.sentinel import sentinel_group


def test_a_primary_failover_mid_meeting_loses_no_segment(tmp_path: Path) -> None:
    with (
        sentinel_group(tmp_path / "redis") as group,
        running(tmp_path / "stack", redis_url=group.url) as stack,
    ):
        r = connect(group.url)  # the test's own reads follow the primary too
        old = group.primary.port
        outage_mid_meeting(stack, r, group.primary.kill, lambda: group.wait_failover(old))
        assert group.primary_port() == group.replica.port
        r.close()
