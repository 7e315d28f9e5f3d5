"""Batch leases on pending segments, against real Redis."""

from __future__ import annotations

from pipeline.models import SealedSegment
from pipeline.runtime import Runtime
from pipeline.store import schema


def test_claims_are_exclusive_and_released_only_by_their_owner(rt: Runtime) -> None:
    seg = rt.store.segments
    for seq in range(3):
        seg.put_audio(SealedSegment("m_1", "p", seq, b"sealed"))
    mine = seg.claim_pending("worker-a", 2, ttl=60)
    assert mine == [("m_1", "p.0"), ("m_1", "p.1")]
    assert not seg.claim("m_1", "p.0", "worker-b", 60)
    assert seg.claim("m_1", "p.0", "worker-a", 60)  # the owner may renew
    assert seg.claim_pending("worker-b", 5, ttl=60) == [("m_1", "p.2")]
    seg.release(mine, "worker-b")  # not theirs: nothing happens
    assert not seg.claim("m_1", "p.1", "worker-b", 60)
    seg.release(mine, "worker-a")
    assert seg.claim("m_1", "p.1", "worker-b", 60)
    seg.delete_audio("m_1", "p.2")  # finishing a segment drops its lease and index entry
    assert seg.claim("m_1", "p.2", "worker-c", 60)
    assert rt.store.redis.zcard(schema.PENDING) == 2
