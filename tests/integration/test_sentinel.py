"""The store on a primary Redis Sentinel watches (``redis+sentinel://``), against real
servers (:mod:`tests.harness.sentinel`): every kind of client sealscribe makes (the store's,
capture's policy listener, the caption followers' pool, Celery's) follows a failover, and
``SEALSCRIBE_REDIS_WAIT_REPLICAS`` makes a sealed write wait until the replica has it (the
primary killed mid-meeting: ``tests/faults/test_sentinel_failover.py``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterator

import pytest
import redis

from pipeline.models import SealedSegment
from pipeline.queue import broker_conf
from pipeline.store import Store, schema
from pipeline.store.connection import async_pool, connect, connect_async
from tests.harness.sentinel import SentinelGroup, sentinel_group


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    with sentinel_group(tmp_path_factory.mktemp("sentinel")) as g:
        yield g


def segment(seq: int) -> SealedSegment:
    return SealedSegment("m-sentinel", "alice", seq, os.urandom(64 * 1024))


def test_a_sealed_write_waits_until_the_replica_has_it(
    group: SentinelGroup, caplog: pytest.LogCaptureFixture
) -> None:
    replica = redis.Redis(port=group.replica.port)
    # (a patient store for the reads: a replica starved of CPU may take more than 500 ms)
    patient = Store.from_url(group.url, wait_replicas=1, wait_ms=5000)
    for seq in range(20):  # no pause between the write and the read on the replica
        sid = patient.segments.put_audio(segment(seq))
        assert replica.exists(schema.audio("m-sentinel", sid)), seq
    store = Store.from_url(group.url, wait_replicas=1, wait_ms=500)
    # a replica that stops answering: the write stands on the primary, and says so
    os.kill(group.replica.proc.pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.WARNING, "pipeline.store.connection"):
            store.segments.put_audio(segment(99))
    finally:
        os.kill(group.replica.proc.pid, signal.SIGCONT)
    assert "reached 0 of 1 replicas within 500 ms" in caplog.text
    assert "m-sentinel/alice.99" in caplog.text
    replica.close()


def test_every_client_follows_a_failover(group: SentinelGroup) -> None:
    """Run last in the module: the group's primary is gone afterwards."""
    from celery import Celery

    store = Store.from_url(group.url)
    store.redis.set("ss:test:before", "1")
    app = Celery("sealscribe-test", set_as_current=False)
    app.conf.update(broker_conf(group.url, 60))

    async def async_clients(key: str) -> list[object]:
        client = connect_async(group.url, socket_connect_timeout=5)
        pool = async_pool(group.url, max_connections=2, timeout=5)
        pooled = redis.asyncio.Redis(connection_pool=pool)
        try:
            return [await client.get(key), await pooled.get(key)]
        finally:
            await client.aclose()
            await pooled.aclose()
            await pool.disconnect()

    assert asyncio.run(async_clients("ss:test:before")) == [b"1", b"1"]
    with app.connection_for_write() as conn:
        conn.default_channel.client.set("ss:test:kombu", "1")  # the broker's own client
    old = group.primary.port
    group.primary.kill()
    group.wait_failover(old)
    store.redis.set("ss:test:after", "2")  # the same client object, now on the replica
    assert connect(group.url).get("ss:test:before") == b"1"
    assert asyncio.run(async_clients("ss:test:after")) == [b"2", b"2"]
    with app.connection_for_write() as conn:
        assert conn.default_channel.client.get("ss:test:kombu") == b"1"
    assert group.primary_port() == group.replica.port
    app.close()
