"""Retention with real time shortened by configuration (no mocked clocks): content expires in
Redis on its own, and the purge crypto-shreds meetings past retention."""

from __future__ import annotations

import time

import pytest
import redis

from keys.errors import KeyUnavailable
from keys.types import KeyUse, Purpose
from pipeline import services
from pipeline.capture.file import capture_segments
from pipeline.errors import InvalidInput, NotFound
from pipeline.models import AudioSegment, TranscriptSegment
from pipeline.queue import use_broker
from pipeline.runtime import Runtime
from pipeline.sealing import seal_transcript
from pipeline.services.retention import purge_expired, set_retention
from pipeline.store import schema


def test_content_expires_and_the_meeting_is_shredded(
    rt: Runtime, redis_client: redis.Redis
) -> None:
    tenant, _ = services.create_tenant(rt, "Acme")
    kept = set_retention(rt, tenant.id, transcript_ttl=3, audio_ttl=2)
    assert (kept.transcript_ttl, kept.audio_ttl) == (3, 2)
    m = services.create_meeting(rt, tenant.id, transcription=True)
    use_broker(rt.settings.broker)  # the queued task is never consumed
    capture_segments(rt, m, [AudioSegment("p", 0, 0, 16000, bytes(3200))])
    key = services.data_key(rt, m, KeyUse.TRANSCRIPT, Purpose.TRANSCRIBE)
    rt.store.segments.complete(
        seal_transcript(key, tenant.id, m.id, TranscriptSegment("p", 1, 0, 100, "old news")),
        0,
        services.get_tenant(rt, tenant.id).transcript_ttl,
    )
    # PTTL, not TTL: TTL rounds, and says 0 with half a second left on a slow machine
    assert 0 < redis_client.pttl(schema.audio(m.id, "p.0")) <= 2000
    assert 0 < redis_client.pttl(schema.transcript(m.id, "p.1")) <= 3000
    other = services.create_tenant(rt, "Other")[0]
    fresh = services.create_meeting(rt, other.id)  # default retention: untouched

    time.sleep(3.5)
    assert not redis_client.exists(schema.audio(m.id, "p.0"), schema.transcript(m.id, "p.1"))
    backup = {k: redis_client.dump(k) for k in redis_client.scan_iter("*")}
    report = purge_expired(rt)
    assert report.meetings_shredded == 1 and report.stale_index_entries >= 2
    with pytest.raises(NotFound):
        services.get_meeting(rt, m.id)
    assert services.get_meeting(rt, fresh.id).id == fresh.id
    assert redis_client.zcard(schema.PENDING) == 0
    assert [
        e.outcome for e in services.audit_show(rt, tenant.id, limit=1000) if e.action == "shred"
    ] == ["retention"]
    # Even the wrapped keys in a backup taken before the purge no longer open.
    for k, v in backup.items():
        assert v is not None
        redis_client.restore(k, 0, v, replace=True)
    with pytest.raises(KeyUnavailable, match="retired"):
        services.data_key(rt, m, KeyUse.TRANSCRIPT, Purpose.DELIVER)


def test_retention_bounds_are_checked(rt: Runtime) -> None:
    tenant, _ = services.create_tenant(rt, "Acme")
    with pytest.raises(InvalidInput, match="audio wait must be between 1 and 604800"):
        set_retention(rt, tenant.id, audio_ttl=10**7)
    with pytest.raises(InvalidInput, match="transcript retention"):
        set_retention(rt, tenant.id, transcript_ttl=0)
    with pytest.raises(NotFound):
        set_retention(rt, "t_nope", audio_ttl=5)
