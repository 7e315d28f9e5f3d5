"""Guarantees 3-6 against real Redis: content survives rotation and retirement, dies with
revocation, and a deleted meeting cannot be opened even from an earlier copy of Redis."""

from __future__ import annotations

import os

import pytest
import redis

from keys.errors import InvalidSeal, KeyRevoked, KeyUnavailable
from keys.types import KeyUse, Purpose
from pipeline import services
from pipeline.errors import NotFound
from pipeline.models import AudioSegment, Meeting
from pipeline.runtime import Runtime
from pipeline.sealing import open_audio, seal_audio
from pipeline.store import schema


def put_segments(rt: Runtime, meeting: Meeting, n: int) -> dict[str, bytes]:
    key = services.data_key(rt, meeting, KeyUse.AUDIO, Purpose.TRANSCRIBE)
    out = {}
    for seq in range(n):
        pcm = os.urandom(3200)
        seg = AudioSegment(f"p{seq % 3}", seq, seq * 100, 16000, pcm)
        sid = rt.store.segments.put_audio(seal_audio(key, meeting.tenant_id, meeting.id, seg))
        out[sid] = pcm
    return out


def open_all(rt: Runtime, meeting: Meeting, expected: dict[str, bytes]) -> None:
    key = services.data_key(rt, meeting, KeyUse.AUDIO, Purpose.DELIVER)
    for sid, pcm in expected.items():
        sealed = rt.store.segments.get_audio(meeting.id, sid)
        assert sealed is not None
        assert open_audio(key, meeting.tenant_id, sealed).pcm == pcm


def test_100_segments_survive_rotation_and_retire_then_die_on_revoke(rt: Runtime) -> None:
    tenant, _ = services.create_tenant(rt, "Acme")
    meetings = [services.create_meeting(rt, tenant.id, transcription=True) for _ in range(3)]
    content = {m.id: put_segments(rt, m, n) for m, n in zip(meetings, (34, 33, 33), strict=True)}
    assert sum(len(c) for c in content.values()) == 100
    sealed_before = {k: rt.store.redis.get(k) for k in rt.store.redis.scan_iter("ss:audio:*")}

    first = services.rotate_keys(rt, tenant.id)
    second = services.rotate_keys(rt, tenant.id)
    assert (first.primary_version, first.rewrapped) == (2, 6)
    assert (second.primary_version, second.rewrapped) == (3, 6)
    services.retire_keys(rt, tenant.id, below=3)
    report = services.key_status(rt, tenant.id)
    assert report.status.versions == (3,)
    assert report.wrapped_by_version == {3: 6}
    # No content was re-encrypted: every sealed segment is byte-for-byte unchanged.
    assert {k: rt.store.redis.get(k) for k in sealed_before} == sealed_before
    for m in meetings:
        open_all(rt, m, content[m.id])

    services.revoke_keys(rt, tenant.id)
    for m in meetings:
        with pytest.raises(KeyRevoked):
            services.data_key(rt, m, KeyUse.AUDIO, Purpose.DELIVER)
    audit = services.audit_show(rt, tenant.id, limit=1000)
    assert [e.outcome for e in audit if e.action == "unwrap"][-1] == "KeyRevoked"
    assert services.audit_verify(rt, tenant.id).ok


def test_rotation_resumes_after_interruption(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant, _ = services.create_tenant(rt, "Acme")
    meetings = [services.create_meeting(rt, tenant.id) for _ in range(5)]
    real = rt.store.meetings.replace_wrapped
    calls = {"n": 0}

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:
            raise ConnectionError("simulated crash mid-rotation")
        return real(*args, **kwargs)

    monkeypatch.setattr(rt.store.meetings, "replace_wrapped", flaky)
    with pytest.raises(ConnectionError):
        services.rotate_keys(rt, tenant.id)
    monkeypatch.setattr(rt.store.meetings, "replace_wrapped", real)
    assert services.key_status(rt, tenant.id).wrapped_by_version == {1: 7, 2: 3}
    resumed = rt.keys.rewrap_pending(tenant.id, "test")
    assert resumed == 7
    services.retire_keys(rt, tenant.id, below=2)
    for m in meetings:
        services.data_key(rt, m, KeyUse.TRANSCRIPT, Purpose.DELIVER)


def test_delete_crypto_shreds_even_a_backup(rt: Runtime, redis_client: redis.Redis) -> None:
    tenant, _ = services.create_tenant(rt, "Acme")
    doomed = services.create_meeting(rt, tenant.id, transcription=True)
    kept = services.create_meeting(rt, tenant.id, transcription=True)
    doomed_content = put_segments(rt, doomed, 5)
    kept_content = put_segments(rt, kept, 5)
    # An operator's backup of Redis, taken before the delete.
    backup = {k: redis_client.dump(k) for k in redis_client.scan_iter("*")}

    services.delete_meeting(rt, doomed.id)
    assert services.finish_shreds(rt, tenant.id) == 1  # what the worker's task does next
    assert not list(redis_client.scan_iter(f"*{doomed.id}*"))
    with pytest.raises(NotFound):
        services.get_meeting(rt, doomed.id)
    open_all(rt, kept, kept_content)  # the other meeting is untouched
    actions = [e.action for e in services.audit_show(rt, tenant.id, limit=1000)]
    assert actions.index("shred") < actions.index("retire")

    # Restore the backup: the old wrapped keys are back, but their key version is gone.
    redis_client.flushdb()
    for k, v in backup.items():
        assert v is not None
        redis_client.restore(k, 0, v)
    assert rt.store.segments.get_audio(doomed.id, next(iter(doomed_content))) is not None
    with pytest.raises(KeyUnavailable, match="retired"):
        services.data_key(rt, doomed, KeyUse.AUDIO, Purpose.DELIVER)


def test_tenant_b_cannot_open_tenant_a(rt: Runtime) -> None:
    a, _ = services.create_tenant(rt, "A")
    b, _ = services.create_tenant(rt, "B")
    ma = services.create_meeting(rt, a.id, transcription=True)
    content = put_segments(rt, ma, 1)
    with pytest.raises(NotFound):
        services.get_meeting(rt, ma.id, tenant_id=b.id)
    # Even with direct access: A's wrapped key under B's context, or A's segment under B.
    wrapped = rt.store.meetings.wrapped_key(ma.id, KeyUse.AUDIO)
    from keys.types import KeyContext

    with pytest.raises(InvalidSeal):
        rt.keys.provider.unwrap(
            b.id, wrapped, KeyContext(b.id, ma.id, KeyUse.AUDIO), Purpose.DELIVER
        )
    key = services.data_key(rt, ma, KeyUse.AUDIO, Purpose.DELIVER)
    sealed = rt.store.segments.get_audio(ma.id, next(iter(content)))
    assert sealed is not None
    with pytest.raises(InvalidSeal):
        open_audio(key, b.id, sealed)


def test_transcription_is_off_by_default_and_switchable(rt: Runtime) -> None:
    tenant, token = services.create_tenant(rt, "Acme")
    m = services.create_meeting(rt, tenant.id)
    assert not m.transcription and not m.transcribes("p1")
    m = services.set_transcription(rt, m.id, True)
    assert m.transcribes("p1")
    m = services.set_consent(rt, m.id, "p1", opted_out=True)
    assert not m.transcribes("p1") and m.transcribes("p2")
    assert services.authenticate(rt, token).id == tenant.id
    assert rt.store.redis.get(schema.token(token)) == tenant.id.encode()
    assert not [k for k in rt.store.redis.scan_iter("*") if token.encode() in k]
