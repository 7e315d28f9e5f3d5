"""Redis restarted mid-meeting: capture holds what it sealed meanwhile, and loses none of it.

A participant speaks over WebRTC (WHIP) into ``sealscribe serve``; Redis is killed between
her utterances and comes back (from its append-only file) after she has said three more.
Capture keeps those sealed, in memory, in a backlog bounded in bytes, and stores them once
Redis answers; the worker, reconnected, transcribes them. Every phrase must reach the
transcript, and capture must report no drops. (Drops beyond the bound are counted: unit test
``tests/unit/test_capture_backlog.py``.) Fails with the ``capture-drops-on-outage`` fault.
"""

from __future__ import annotations

from pathlib import Path

import redis

from tests.faults.harness import outage_mid_meeting, running


def test_a_redis_restart_mid_meeting_loses_no_segment(tmp_path: Path) -> None:
    with running(tmp_path, durable_redis=True) as stack:
        redis_server = stack.redis
        assert redis_server is not None
        r = redis.Redis.from_url(stack.redis_url)
        outage_mid_meeting(stack, r, redis_server.kill, redis_server.start)
        r.close()
