"""A worker killed (SIGKILL) in the middle of a batch: a new worker redoes that batch, every
segment is transcribed exactly once, and nothing is left behind.

The mechanism: a task is acknowledged only when done (its message comes back once the
visibility timeout passes), and the other segments a batch took are only leased (the lease
lapses after the same timeout). Fails with the ``worker-owns-work`` fault.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis

from pipeline import services
from pipeline.services.transcripts import read_transcript
from pipeline.store import schema
from tests.faults.harness import PHRASES, running, submit_spoken
from tests.harness.processes import wait_until
from tests.privacy.live import counts, settled

VISIBILITY_S = 5
BATCH = 4


def test_a_worker_killed_mid_batch_loses_and_repeats_nothing(tmp_path: Path) -> None:
    with running(
        tmp_path, SEALSCRIBE_BATCH=str(BATCH), SEALSCRIBE_VISIBILITY=str(VISIBILITY_S)
    ) as stack:
        assert stack.worker is not None
        tenant = stack.tenant("faults")
        meeting = services.create_meeting(stack.rt, tenant.id, transcription=True)
        # five segments of about eight seconds: a batch of four takes the worker seconds
        texts = list(PHRASES.values())
        r = redis.Redis.from_url(stack.redis_url)
        with stack.workers_paused():
            submit_spoken(stack, meeting, texts, repeat=4)
        leases = schema.lease(meeting.id, "*")
        wait_until(
            lambda: len(list(r.scan_iter(leases))) >= 2,
            60,
            "the worker taking a batch",
            interval=0.01,
        )
        stack.worker.kill()  # SIGKILL, the whole process group
        killed_at = time.monotonic()
        assert counts(r, meeting.id) == (len(texts), 0), "the batch finished before the kill"

        stack.worker.start()
        settled(r, meeting.id, transcripts=len(texts), timeout=60 + VISIBILITY_S)
        print(f"all redone {time.monotonic() - killed_at:.1f} s after the kill")
        assert counts(r, meeting.id) == (0, len(texts))
        assert r.xlen(schema.meeting_captions(meeting.id)) == len(texts)  # none twice
        done = read_transcript(stack.rt, meeting.id)
        assert [(t.participant_id, t.seq) for t in done] == [("alice", i) for i in range(5)]
        assert all(t.text.strip() for t in done)
        r.close()
