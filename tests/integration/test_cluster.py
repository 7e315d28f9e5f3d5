"""The store on a real Redis Cluster (six ``redis-server`` processes on loopback, three
primaries and three replicas): every meeting's keys in one slot, meetings spread over the
primaries, capture's policy channel, the caption reader across slots, and the one-time key
migration of a store from before the hash tags.

CI's ``cluster`` stage also runs the meeting path, worker, retention and erasure suites with
their store on a cluster (``SEALSCRIBE_TEST_REDIS_URL=redis+cluster://...``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot
from typer.testing import CliRunner

from pipeline import services
from pipeline.capture.policy import MeetingPolicy
from pipeline.cli import app
from pipeline.config import Settings, get_settings
from pipeline.errors import InvalidInput
from pipeline.runtime import Runtime
from pipeline.services.captions import CaptionHub
from pipeline.store import schema
from tests.harness.cluster import Cluster, redis_cluster
from tests.harness.rabbitmq import RABBITMQ_URL, require_rabbitmq
from tests.harness.redis import RedisServer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture
def crt(cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A runtime whose store is the cluster (emptied first) and whose broker is RabbitMQ."""
    require_rabbitmq()
    client = cluster.client()
    client.flushall(target_nodes=client.PRIMARIES)
    client.close()
    monkeypatch.setenv("SEALSCRIBE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEALSCRIBE_REDIS_URL", cluster.url)
    monkeypatch.setenv("SEALSCRIBE_BROKER_URL", RABBITMQ_URL)
    monkeypatch.setenv("SEALSCRIBE_KEY_PROVIDER", "local")
    get_settings.cache_clear()
    yield Runtime.from_settings(get_settings(), actor="test")
    get_settings.cache_clear()


def test_meetings_spread_over_the_primaries_and_each_stays_in_one_slot(
    crt: Runtime, cluster: Cluster
) -> None:
    tenant, _ = services.create_tenant(crt, "Acme")
    meetings = [services.create_meeting(crt, tenant.id, transcription=True) for _ in range(12)]
    client = cluster.client()
    try:
        owners = set()
        for m in meetings:
            slots = {key_slot(k) for k in client.scan_iter(match=f"ss:*{{{m.id}}}*")}
            assert len(slots) == 1  # record, keys, policy: one slot
            owners.add(client.nodes_manager.get_node_from_slot(slots.pop()).name)
        assert len(owners) >= 2  # twelve meetings are not all on one primary
    finally:
        client.close()
    listed = {m.id for m in services.list_meetings(crt, tenant.id)}
    assert listed == {m.id for m in meetings}
    services.delete_meeting(crt, meetings[0].id, tenant.id)
    assert meetings[0].id not in {m.id for m in services.list_meetings(crt, tenant.id)}
    assert (tenant.id, meetings[0].id) in crt.store.meetings.pending_shreds(tenant.id)


def test_capture_hears_a_switch_on_the_cluster_at_once(crt: Runtime) -> None:
    tenant, _ = services.create_tenant(crt, "Acme")
    m = services.create_meeting(crt, tenant.id, transcription=True)

    async def run() -> float:
        policy = MeetingPolicy(crt, m, poll=60.0)  # no polling: only the channel can tell
        changed = asyncio.Event()
        policy.on_change.append(changed.set)
        watching = asyncio.create_task(policy.watch())
        try:
            await asyncio.sleep(1.0)  # subscribed
            loop = asyncio.get_running_loop()
            start = loop.time()
            await asyncio.to_thread(services.set_transcription, crt, m.id, False, tenant.id)
            await asyncio.wait_for(changed.wait(), 5.0)
            assert not policy.transcribing
            return loop.time() - start
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

    assert asyncio.run(run()) < 2.0


def test_the_caption_reader_wakes_followers_in_every_slot(crt: Runtime) -> None:
    tenant, _ = services.create_tenant(crt, "Acme")
    meetings = [services.create_meeting(crt, tenant.id) for _ in range(6)]
    assert len({key_slot(schema.meeting_captions(m.id).encode()) for m in meetings}) == 6

    async def run() -> None:
        hub = CaptionHub(crt)
        try:
            woken = {m.id: hub.watch(m.id) for m in meetings}
            await asyncio.sleep(0.6)  # the reader knows where each stream ends
            for event in woken.values():
                event.clear()
            for m in meetings:
                crt.store.redis.xadd(schema.meeting_captions(m.id), {"sid": "p.1"})
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in woken.values())), timeout=3.0)
        finally:
            await hub.close()

    asyncio.run(run())


def test_a_cluster_store_needs_its_own_broker_and_refuses_waits(cluster: Cluster) -> None:
    env = {"SEALSCRIBE_REDIS_URL": cluster.url}
    with pytest.raises(InvalidInput, match="needs SEALSCRIBE_BROKER_URL"):
        Settings.from_env(env)
    env["SEALSCRIBE_BROKER_URL"] = RABBITMQ_URL
    assert Settings.from_env(env).broker == RABBITMQ_URL
    with pytest.raises(InvalidInput, match="min-replicas-to-write"):
        Settings.from_env({**env, "SEALSCRIBE_REDIS_WAIT_REPLICAS": "1"})
    with pytest.raises(InvalidInput, match="names nodes only"):
        Settings.from_env({**env, "SEALSCRIBE_REDIS_URL": cluster.url + "/3"})


def test_migrate_refuses_a_cluster(crt: Runtime) -> None:
    refused = CliRunner().invoke(app, ["store", "migrate"])
    assert refused.exit_code == 2
    assert "before moving it to a cluster" in refused.output


@pytest.fixture
def plain_rt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A runtime on a Redis of its own (whatever store the suite runs on): migration is for
    one Redis, before a store moves to a cluster."""
    server = RedisServer(tmp_path / "redis")
    server.start(20)
    monkeypatch.setenv("SEALSCRIBE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEALSCRIBE_REDIS_URL", server.url)
    monkeypatch.setenv("SEALSCRIBE_BROKER_URL", "")
    monkeypatch.setenv("SEALSCRIBE_KEY_PROVIDER", "local")
    get_settings.cache_clear()
    try:
        yield Runtime.from_settings(get_settings(), actor="test")
    finally:
        get_settings.cache_clear()
        server.stop()


def test_migrate_renames_a_store_from_before_the_tags(plain_rt: Runtime) -> None:
    rt = plain_rt
    tenant, token = services.create_tenant(rt, "Acme")
    m = services.create_meeting(rt, tenant.id, transcription=True)
    services.set_consent(rt, m.id, "p", True, tenant.id)
    r = rt.store.redis
    # how the previous version named them: the same, without the braces
    for raw in list(r.scan_iter(match="ss:*")):
        key = raw.decode()
        if "{" in key:
            r.rename(key, key.replace("{", "").replace("}", ""))
    r.zadd(f"ss:sockets:meeting:{m.id}", {"sock": 1.0})  # a lease counted the old way
    with pytest.raises(Exception):
        services.get_meeting(rt, m.id, tenant.id)

    runner = CliRunner()
    dry = runner.invoke(app, ["store", "migrate", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["renamed"] >= 5
    assert not any(b"{" in k for k in r.scan_iter(match="ss:*"))  # a dry run changes nothing

    done = runner.invoke(app, ["store", "migrate", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["renamed"] == json.loads(dry.output)["renamed"]
    assert report["dropped"] == 1 and report["conflicts"] == []
    again = services.get_meeting(rt, m.id, tenant.id)
    assert again.opted_out == frozenset({"p"}) and again.transcription
    assert services.authenticate(rt, token).id == tenant.id
    assert json.loads(runner.invoke(app, ["store", "migrate", "--json"]).output)["renamed"] == 0


def test_a_shred_marked_again_after_a_rotation_began_is_kept(rt: Runtime) -> None:
    """The shred mark is written before a meeting's keys are destroyed and again after: a
    rotation that read the first mark (and rewrapped the keys still there) clears only it,
    so the meeting stays marked for the rotation that follows the destruction."""
    tenant, _ = services.create_tenant(rt, "Acme")
    m = services.create_meeting(rt, tenant.id, transcription=True)
    store = rt.store.meetings
    store._mark_shred(rt.store.redis, tenant.id, m.id)  # a delete's first step...
    read = store.shred_marks(tenant.id)  # ...where a rotation reads the marks
    assert [(t, mid) for t, mid, _ in read] == [(tenant.id, m.id)]
    store.shred(m)  # the delete goes on: keys destroyed, marked again
    store.shreds_done(read)  # the rotation that began before clears what it read
    assert store.pending_shreds(tenant.id) == [(tenant.id, m.id)]
    store.shreds_done(store.shred_marks(tenant.id))  # the next rotation clears it
    assert store.pending_shreds(tenant.id) == []
