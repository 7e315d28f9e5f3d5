"""The Transit key provider against a real OpenBao dev server."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.wer import normalise
from keys.errors import InvalidKeyInput, InvalidSeal, KeyRevoked, KeyUnavailable
from keys.transit import TransitConfig, TransitKeyProvider
from keys.types import DataKey, KeyContext, KeyUse, Purpose
from pipeline import queue, services
from pipeline.capture.file import feed
from pipeline.capture.session import CaptureSession
from pipeline.config import Settings, get_settings
from pipeline.models import AudioSegment, Meeting
from pipeline.queue import use_broker
from pipeline.runtime import Runtime
from pipeline.sealing import open_audio, seal_audio
from pipeline.services.transcripts import read_transcript, submit_file, wait_for
from tests.conftest import shared_data
from tests.harness.bao import BaoServer, TcpProxy
from tests.harness.processes import WORKER_REDIS_URL, WorkerProcess, wait_until, worker_env


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = BaoServer(tmp_path_factory.mktemp("bao"))
    yield server
    server.stop()


@pytest.fixture
def transit(bao: BaoServer) -> TransitKeyProvider:
    return TransitKeyProvider(TransitConfig(url=bao.url, token=bao.token))


@pytest.fixture
def trt(settings: Settings, transit: TransitKeyProvider) -> Runtime:
    return Runtime.from_settings(settings, actor="test", provider=transit)


def put(rt: Runtime, meeting: Meeting, n: int) -> dict[str, bytes]:
    key = services.data_key(rt, meeting, KeyUse.AUDIO, Purpose.TRANSCRIBE)
    out = {}
    for seq in range(n):
        pcm = os.urandom(640)
        sealed = seal_audio(
            key, meeting.tenant_id, meeting.id, AudioSegment("p", seq, 0, 16000, pcm)
        )
        out[rt.store.segments.put_audio(sealed)] = pcm
    return out


def read_all(rt: Runtime, meeting: Meeting, content: dict[str, bytes]) -> None:
    key = services.data_key(rt, meeting, KeyUse.AUDIO, Purpose.DELIVER)
    for sid, pcm in content.items():
        sealed = rt.store.segments.get_audio(meeting.id, sid)
        assert sealed is not None and open_audio(key, meeting.tenant_id, sealed).pcm == pcm


def test_round_trip_rotation_and_retire(trt: Runtime, bao: BaoServer) -> None:
    tenant, _ = services.create_tenant(trt, "Acme")
    meetings = [services.create_meeting(trt, tenant.id, transcription=True) for _ in range(3)]
    content = {m.id: put(trt, m, 10) for m in meetings}
    wrapped = trt.store.meetings.wrapped_key(meetings[0].id, KeyUse.AUDIO)
    assert wrapped.provider == "transit" and wrapped.ciphertext.startswith(b"vault:v1:")
    assert services.rotate_keys(trt, tenant.id).rewrapped == 6
    assert services.rotate_keys(trt, tenant.id).primary_version == 3
    services.retire_keys(trt, tenant.id, below=3)
    report = services.key_status(trt, tenant.id)
    assert report.status.provider == "transit" and report.status.min_version == 3
    assert report.status.versions == (3,) and report.wrapped_by_version == {3: 6}
    for m in meetings:
        read_all(trt, m, content[m.id])
    key_name = report.status.details["key"]
    # The old ciphertext no longer decrypts: version 1 is trimmed away in OpenBao.
    with pytest.raises(KeyUnavailable, match="retired"):
        trt.keys.provider.unwrap(
            tenant.id, wrapped, KeyContext(tenant.id, meetings[0].id, KeyUse.AUDIO), Purpose.DELIVER
        )
    # OpenBao's own audit device saw exactly the decrypts our audit log recorded.
    ours = [
        e
        for e in services.audit_show(trt, tenant.id, limit=1000)
        if e.action == "unwrap" and e.outcome == "ok"
    ]
    assert bao.decrypt_calls(key_name) == len(ours) > 0
    assert {e.purpose for e in ours} == {"transcribe", "deliver"}


def test_tenants_are_isolated(trt: Runtime, transit: TransitKeyProvider) -> None:
    a, _ = services.create_tenant(trt, "A")
    b, _ = services.create_tenant(trt, "B")
    ma = services.create_meeting(trt, a.id)
    wrapped = trt.store.meetings.wrapped_key(ma.id, KeyUse.AUDIO)
    # B's key with B's context, A's key with another meeting's context: both fail.
    with pytest.raises(InvalidSeal):
        transit.unwrap(b.id, wrapped, KeyContext(b.id, ma.id, KeyUse.AUDIO), Purpose.DELIVER)
    with pytest.raises(InvalidSeal):
        transit.unwrap(a.id, wrapped, KeyContext(a.id, "m_other", KeyUse.AUDIO), Purpose.DELIVER)
    with pytest.raises(ValueError, match="another tenant"):
        transit.unwrap(b.id, wrapped, KeyContext(a.id, ma.id, KeyUse.AUDIO), Purpose.DELIVER)


def test_revoke_through_sealscribe(trt: Runtime) -> None:
    tenant, _ = services.create_tenant(trt, "Acme")
    m = services.create_meeting(trt, tenant.id, transcription=True)
    put(trt, m, 2)
    services.revoke_keys(trt, tenant.id)
    with pytest.raises(KeyRevoked):
        services.data_key(trt, m, KeyUse.AUDIO, Purpose.DELIVER)
    assert services.key_status(trt, tenant.id).status.revoked
    with pytest.raises(KeyRevoked):
        services.create_meeting(trt, tenant.id)


def test_revoke_done_in_openbao_directly(trt: Runtime, bao: BaoServer) -> None:
    tenant, _ = services.create_tenant(trt, "Acme")
    m = services.create_meeting(trt, tenant.id, transcription=True)
    content = put(trt, m, 2)
    read_all(trt, m, content)
    name = f"sealscribe-{tenant.id}"
    bao.client.secrets.transit.update_key_configuration(name=name, deletion_allowed=True)
    bao.client.secrets.transit.delete_key(name=name)  # the customer, in their own KMS
    with pytest.raises(KeyRevoked):
        services.data_key(trt, m, KeyUse.AUDIO, Purpose.DELIVER)
    assert services.audit_show(trt, tenant.id, limit=1000)[-1].outcome == "KeyRevoked"


def test_kms_outage_is_key_unavailable_and_never_weaker(trt: Runtime, tmp_path: Path) -> None:
    tenant, _ = services.create_tenant(trt, "Acme")
    m = services.create_meeting(trt, tenant.id, transcription=True)
    down = TransitKeyProvider(TransitConfig(url="http://127.0.0.1:9", token="x", timeout=1))
    rt_down = Runtime(
        trt.settings,
        trt.store,
        trt.keys.__class__(down, trt.keys.audit, trt.store.meetings),
        "test",
    )
    with pytest.raises(KeyUnavailable, match="unreachable"):
        services.data_key(rt_down, m, KeyUse.AUDIO, Purpose.TRANSCRIBE)
    with pytest.raises(KeyUnavailable):
        services.create_meeting(rt_down, tenant.id)
    assert services.audit_show(trt, tenant.id, limit=1000)[-1].outcome == "KeyUnavailable"


def test_migration_local_to_transit_and_back(
    settings: Settings, bao: BaoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    both = dataclasses.replace(settings, transit=TransitConfig(url=bao.url, token=bao.token))
    rt = Runtime.from_settings(both, actor="test")  # routes each tenant to its provider
    tenant, _ = services.create_tenant(rt, "Acme")
    assert tenant.key_provider == "local"
    meetings = [services.create_meeting(rt, tenant.id, transcription=True) for _ in range(3)]
    content = {m.id: put(rt, m, 5) for m in meetings}
    sealed_before = {k: rt.store.redis.get(k) for k in rt.store.redis.scan_iter("ss:audio:*")}

    # Interrupted after two data keys: everything stays readable, mixed as it is.
    real = rt.store.meetings.replace_wrapped
    calls = {"n": 0}

    def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("simulated crash mid-migration")
        return real(*args, **kwargs)

    monkeypatch.setattr(rt.store.meetings, "replace_wrapped", crash)
    with pytest.raises(ConnectionError):
        services.migrate_keys(rt, tenant.id, "transit")
    monkeypatch.setattr(rt.store.meetings, "replace_wrapped", real)
    providers = {w.provider for _, w in rt.store.meetings.wrapped_keys(tenant.id, 0, 100)[1]}
    assert providers == {"local", "transit"}
    for m in meetings:
        read_all(rt, m, content[m.id])

    report = services.migrate_keys(rt, tenant.id, "transit")  # resumes
    assert report.rewrapped == 4
    status = services.key_status(rt, tenant.id)
    assert status.status.provider == "transit" and status.wrapped_by_version == {1: 6}
    assert {w.provider for _, w in rt.store.meetings.wrapped_keys(tenant.id, 0, 100)[1]} == {
        "transit"
    }
    for m in meetings:
        read_all(rt, m, content[m.id])

    back = services.migrate_keys(rt, tenant.id, "local")
    assert back.rewrapped == 6
    assert services.key_status(rt, tenant.id).status.provider == "local"
    for m in meetings:
        read_all(rt, m, content[m.id])
    # Content was never re-encrypted, and nothing of it touched the disk.
    assert {k: rt.store.redis.get(k) for k in sealed_before} == sealed_before
    assert services.audit_verify(rt, tenant.id).ok
    assert [
        e.outcome for e in services.audit_show(rt, tenant.id, limit=1000) if e.action == "migrate"
    ] == ["to-transit", "to-transit", "to-local"]


@pytest.fixture(scope="module")
def kms_env(
    bao: BaoServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Runtime, TcpProxy, WorkerProcess]]:
    """A worker keyed through Transit, reaching OpenBao through a proxy we can cut."""
    proxy = TcpProxy(bao.port)
    home = tmp_path_factory.mktemp("kms-home")
    extra = {
        "SEALSCRIBE_KEY_PROVIDER": "transit",
        "SEALSCRIBE_TRANSIT_ADDR": proxy.url,
        "SEALSCRIBE_TRANSIT_TOKEN": bao.token,
        "SEALSCRIBE_TRANSIT_TIMEOUT": "2",
    }
    env = worker_env(home, **extra)
    redis.Redis.from_url(WORKER_REDIS_URL).flushdb()
    with pytest.MonkeyPatch.context() as mp:
        for k in ("SEALSCRIBE_HOME", "SEALSCRIBE_REDIS_URL", *extra):
            mp.setenv(k, env[k])
        get_settings.cache_clear()
        use_broker(WORKER_REDIS_URL)
        worker = WorkerProcess(home, tmp_path_factory.mktemp("kms-logs") / "worker.log", **extra)  # type: ignore[arg-type]
        try:
            yield Runtime.from_settings(get_settings(), actor="test"), proxy, worker
        finally:
            worker.stop()
            proxy.stop()
    get_settings.cache_clear()
    redis.Redis.from_url(WORKER_REDIS_URL).flushdb()


def test_kms_outage_during_capture(kms_env: tuple[Runtime, TcpProxy, WorkerProcess]) -> None:
    rt, proxy, _ = kms_env
    tenant, _ = services.create_tenant(rt, "Acme")
    assert tenant.key_provider == "transit"
    running = services.create_meeting(rt, tenant.id, transcription=True)

    async def scenario() -> None:
        async with CaptureSession(rt, running, wait_for_room=True) as capture:
            await feed(capture, [AudioSegment("p", 0, 0, 16000, bytes(3200))])  # keyed while up
            proxy.stop()
            before = set(rt.store.redis.scan_iter("ss:*"))
            # A meeting that cannot be keyed is not created, and nothing is captured for it.
            with pytest.raises(KeyUnavailable, match="unreachable"):
                await asyncio.to_thread(submit_file, rt, shared_data("jfk", "jfk.flac"), tenant.id)
            assert set(rt.store.redis.scan_iter("ss:*")) == before
            # The running meeting keeps sealing with the data key it already holds.
            await feed(capture, [AudioSegment("p", 1, 100, 16000, bytes(3200))])
            assert capture.stats.stored == 2

    queue.client().control.cancel_consumer("sealscribe", reply=True, timeout=5)
    try:
        asyncio.run(scenario())
        assert rt.store.segments.pending_count(running.id) == 2
    finally:
        proxy.start()
        queue.client().control.add_consumer("sealscribe", reply=True, timeout=5)
    wait_until(lambda: rt.store.segments.pending_count(running.id) == 0, 120, "drained")


def test_kms_outage_during_transcription_is_retried_then_done(
    kms_env: tuple[Runtime, TcpProxy, WorkerProcess],
) -> None:
    rt, proxy, _worker = kms_env
    tenant, _ = services.create_tenant(rt, "Acme")
    queue.client().control.cancel_consumer("sealscribe", reply=True, timeout=5)
    job = submit_file(rt, shared_data("jfk", "jfk.flac"), tenant.id)
    proxy.stop()
    queue.client().control.add_consumer("sealscribe", reply=True, timeout=5)
    try:
        wait_until(
            lambda: any(
                e.outcome == "KeyUnavailable"
                for e in services.audit_show(rt, tenant.id, limit=1000)
            ),
            60,
            "a transcription refused for the KMS outage",
        )
        assert rt.store.segments.pending_count(job.meeting.id) == 1  # kept, not purged
    finally:
        proxy.start()
    wait_for(rt, job, lambda *_: None, timeout=120)
    texts = [s.text for s in read_transcript(rt, job.meeting.id)]
    assert "ask not what your country" in " ".join(normalise(" ".join(texts)))


def test_approle_login_with_a_least_privilege_policy(bao: BaoServer) -> None:
    """What an operator deploys: an AppRole whose policy allows only what sealscribe asks."""
    policy = """
path "transit/keys/sealscribe-*" { capabilities = ["create", "read", "update"] }
path "transit/keys/sealscribe-*/*" { capabilities = ["update"] }
path "transit/encrypt/sealscribe-*" { capabilities = ["update"] }
path "transit/decrypt/sealscribe-*" { capabilities = ["update"] }
path "transit/rewrap/sealscribe-*" { capabilities = ["update"] }
"""
    bao.client.sys.create_or_update_policy(name="sealscribe", policy=policy)
    if "approle/" not in bao.client.sys.list_auth_methods()["data"]:
        bao.client.sys.enable_auth_method("approle")
    bao.client.auth.approle.create_or_update_approle("sealscribe", token_policies=["sealscribe"])
    role_id = bao.client.auth.approle.read_role_id("sealscribe")["data"]["role_id"]
    secret_id = bao.client.auth.approle.generate_secret_id("sealscribe")["data"]["secret_id"]
    config = TransitConfig.from_env(
        {
            "SEALSCRIBE_TRANSIT_ADDR": bao.url,
            "SEALSCRIBE_TRANSIT_ROLE_ID": role_id,
            "SEALSCRIBE_TRANSIT_SECRET_ID": secret_id,
        }
    )
    provider = TransitKeyProvider(config)
    assert provider.create("t_approle") == 1
    ctx = KeyContext("t_approle", "m_1", KeyUse.TRANSCRIPT)
    key = DataKey.generate()
    wrapped = provider.wrap("t_approle", key, ctx, Purpose.TRANSCRIBE)
    assert provider.unwrap("t_approle", wrapped, ctx, Purpose.DELIVER) == key
    assert provider.rotate("t_approle") == 2
    assert provider.rewrap("t_approle", wrapped, ctx).version == 2
    # The policy allows no deletion: revoke falls back to making every version unusable.
    provider.revoke("t_approle")
    with pytest.raises(KeyUnavailable, match="retired"):
        provider.unwrap("t_approle", wrapped, ctx, Purpose.DELIVER)


def test_transit_configuration_errors_are_precise() -> None:
    with pytest.raises(InvalidKeyInput, match="needs SEALSCRIBE_TRANSIT_ADDR"):
        TransitConfig.from_env({})
    with pytest.raises(InvalidKeyInput, match="must start with http"):
        TransitConfig.from_env({"SEALSCRIBE_TRANSIT_ADDR": "kms:8200"})
    with pytest.raises(InvalidKeyInput, match="AppRole"):
        TransitConfig.from_env({"SEALSCRIBE_TRANSIT_ADDR": "http://127.0.0.1:1"})


def test_the_audit_chain_is_macd_by_transit_and_survives_retirement(trt: Runtime) -> None:
    """Each entry carries a Transit HMAC on the tenant's key; after rotation and retirement
    the old MACs cannot be checked, but the newest one covers the chain; a rewritten entry
    (hashes recomputed, MACs kept) is named."""
    tenant, _ = services.create_tenant(trt, "Hmac")
    m = services.create_meeting(trt, tenant.id)
    for _ in range(250):  # more entries than one Transit verify request may check
        services.data_key(trt, m, KeyUse.AUDIO, Purpose.DELIVER)
    entries = services.audit_show(trt, tenant.id, limit=1000)
    assert entries and all(e.mac.startswith("transit:v1:") for e in entries)
    report = services.audit_verify(trt, tenant.id)
    assert report.ok and report.authenticated == len(entries), report
    head = services.audit_head(trt, tenant.id)

    version = services.rotate_keys(trt, tenant.id).primary_version
    services.retire_keys(trt, tenant.id, version)
    report = services.audit_verify(trt, tenant.id, since=head)
    assert report.ok, report.problems
    assert any("retired" in note for note in report.notes), report.notes
    newest = services.audit_show(trt, tenant.id, limit=1000)[-1]
    assert newest.mac.startswith(f"transit:v{version}:")

    # A MAC checked against other input is refused by the KMS; one under v1 is uncheckable.
    [bad] = trt.keys.provider.check_macs(tenant.id, [(b"something else", entries[-1].mac)])
    [good, forged] = trt.keys.provider.check_macs(
        tenant.id, [(newest.mac_input(), newest.mac), (b"x", newest.mac)]
    )
    assert (good, forged) == (True, False) and bad is None  # v1 is retired: uncheckable
