"""Webhooks end to end: a real receiver on loopback, a real Celery worker (with its beat) on a
private Redis, events made by the real service functions.

The worker's egress policy allows exactly 127.0.0.1 (``SEALSCRIBE_BOT_ALLOW``), as this
process's does for creating endpoints; retries are seconds apart and an endpoint gives up
after 8 s of failures instead of a day. Signatures are checked with the ``standardwebhooks``
package, as a receiver would.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from keys.audit import AuditHead
from pipeline import egress, services
from pipeline.api.app import create_app
from pipeline.config import get_settings
from pipeline.egress import EgressPolicy
from pipeline.errors import InvalidInput
from pipeline.queue import use_broker
from pipeline.runtime import Runtime
from pipeline.services import webhooks
from pipeline.services.bots import join_meeting, leave_meeting
from pipeline.services.transcripts import submit_file
from pipeline.store import schema
from pipeline.store.webhooks import Endpoint, WebhookStore
from tests.harness.processes import WorkerProcess, sealscribe, wait_until
from tests.harness.redis import RedisServer
from tests.harness.stack import workers_paused
from tests.harness.webhook_receiver import Received, Receiver

CLIP = Path(__file__).resolve().parents[2] / "pipeline" / "demo_data" / "jfk.ogg"
GIVE_UP_S = 8
WORKER_ENV = {
    "SEALSCRIBE_BOT_ALLOW": "127.0.0.1",
    "SEALSCRIBE_WEBHOOK_RETRY_S": "1",
    "SEALSCRIBE_WEBHOOK_MAX_RETRY_S": "2",
    "SEALSCRIBE_WEBHOOK_TICK_S": "1",
    "SEALSCRIBE_WEBHOOK_GIVE_UP_S": str(GIVE_UP_S),
    "SEALSCRIBE_WEBHOOK_TIMEOUT_S": "3",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private Redis, and this process's settings pointing at it (home shared with the
    worker, so both use the same webhook sealing key)."""
    work = tmp_path_factory.mktemp("webhooks")
    server = RedisServer(work / "redis")
    server.start()
    env = {
        "SEALSCRIBE_HOME": str(work / "home"),
        "SEALSCRIBE_REDIS_URL": server.url,
        "SEALSCRIBE_KEY_PROVIDER": "local",
        **WORKER_ENV,
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        get_settings.cache_clear()
        previous = use_broker(server.url)
        egress.configure(EgressPolicy.parse("127.0.0.1,::1"))  # creation: both loopbacks
        try:
            yield env
        finally:
            egress.configure(None)
            use_broker(previous)
            get_settings.cache_clear()
            server.stop()


@pytest.fixture(scope="module")
def worker(
    stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("logs") / "worker.log"
    w = WorkerProcess(Path(stack["SEALSCRIBE_HOME"]), log, ("--beat",), **stack)
    yield w
    w.stop()


@pytest.fixture
def rt(stack: dict[str, str]) -> Runtime:
    return Runtime.from_settings(get_settings(), actor="test")


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def _verified(secret: str, got: list[Received]) -> list[dict[str, Any]]:
    """Every request verified as a receiver would; their JSON bodies."""
    hook = Webhook(secret)
    out = []
    for r in got:
        assert r.headers["content-type"] == "application/json"
        out.append(hook.verify(r.body, r.headers))
    return out


def _first_seen(bodies: list[dict[str, Any]], ids: list[str]) -> list[tuple[str, str]]:
    """(message id, event) in the order first received (deliveries are at least once)."""
    seen: dict[str, str] = {}
    for msg_id, body in zip(ids, bodies, strict=True):
        seen.setdefault(msg_id, body["type"])
    return list(seen.items())


def test_signed_events_reach_a_receiver_that_was_down_in_order(
    rt: Runtime, worker: WorkerProcess
) -> None:
    tenant, _ = services.create_tenant(rt, "acme")
    receiver = Receiver()  # its port is chosen, nothing listens yet: the receiver is down
    endpoint, secret = webhooks.add_endpoint(rt, tenant.id, receiver.url)
    assert secret.startswith("whsec_")
    stored = repr(rt.store.redis.hgetall(schema.webhook(endpoint.id)))
    assert secret.removeprefix("whsec_") not in stored  # sealed, never in the clear

    a = services.create_meeting(rt, tenant.id)
    b = services.create_meeting(rt, tenant.id)
    services.set_transcription(rt, a.id, True)
    services.set_transcription(rt, b.id, True)
    services.set_consent(rt, a.id, "alice", True)
    services.set_transcription(rt, b.id, False)
    services.set_consent(rt, a.id, "alice", False)
    services.set_transcription(rt, a.id, False)
    services.rotate_keys(rt, tenant.id)

    # the worker tries, fails and backs off while the receiver is down
    wait_until(
        lambda: sum(x.outcome == "failed" for x in webhooks.delivery_log(rt, endpoint.id)) >= 3,
        20,
        "failed attempts while the receiver is down",
    )
    assert not receiver.snapshot()
    log = webhooks.delivery_log(rt, endpoint.id)
    assert all(x.next_try > x.at for x in log if x.outcome == "failed")
    assert "answered" not in " ".join(x.error for x in log)  # nobody answered: no status

    receiver.start()
    try:
        wait_until(
            lambda: len({r.headers["webhook-id"] for r in receiver.snapshot()}) >= 7,
            30,
            "every event delivered once the receiver is back",
        )
    finally:
        receiver.stop()
    got = receiver.snapshot()
    bodies = _verified(secret, got)
    ids = [r.headers["webhook-id"] for r in got]
    per_meeting: dict[str, list[tuple[str, str]]] = {}
    for msg_id, body in zip(ids, bodies, strict=True):
        data = body["data"]
        assert data["tenant_id"] == tenant.id
        key = data.get("meeting_id", "-")
        change = data.get("transcription") or data.get("consent") or body["type"]
        if (msg_id, change) not in per_meeting.setdefault(key, []):
            per_meeting[key].append((msg_id, change))
    assert [c for _, c in per_meeting[a.id]] == ["on", "opted-out", "opted-in", "off"]
    assert [c for _, c in per_meeting[b.id]] == ["on", "off"]
    assert [c for _, c in per_meeting["-"]] == ["key.rotated"]
    assert {b["type"] for b in bodies} == {
        "meeting.transcription_switched",
        "meeting.consent_changed",
        "key.rotated",
    }
    # the log tells the whole story: failures with their next try, then deliveries
    wait_until(lambda: rt.store.webhooks.waiting(endpoint.id) == 0, 10, "outbox empty")
    log = webhooks.delivery_log(rt, endpoint.id, limit=500)
    assert {x.outcome for x in log} == {"failed", "delivered"}
    assert sum(x.outcome == "delivered" for x in log) >= 7
    ep = webhooks.get_endpoint(rt, endpoint.id, tenant.id)
    assert not ep.disabled and not ep.failing_since


def test_a_receiver_answering_500_is_retried_then_disabled(
    rt: Runtime, worker: WorkerProcess, stack: dict[str, str]
) -> None:
    tenant, token = services.create_tenant(rt, "globex")
    receiver = Receiver(status=500).start()
    try:
        endpoint, secret = webhooks.add_endpoint(
            rt, tenant.id, receiver.url, ["meeting.transcription_switched"]
        )
        m = services.create_meeting(rt, tenant.id)
        services.set_transcription(rt, m.id, True)
        services.set_consent(rt, m.id, "bob", True)  # not subscribed: never sent
        wait_until(
            lambda: webhooks.get_endpoint(rt, endpoint.id).disabled != "",
            GIVE_UP_S + 20,
            "the endpoint disabled after failing for SEALSCRIBE_WEBHOOK_GIVE_UP_S",
        )
        got = receiver.snapshot()
    finally:
        receiver.stop()
    assert len(got) >= 3, "retried before giving up"
    assert len({r.headers["webhook-id"] for r in got}) == 1  # the same message each time
    assert len({r.headers["webhook-timestamp"] for r in got}) > 1  # signed afresh each try
    assert {b["type"] for b in _verified(secret, got)} == {"meeting.transcription_switched"}
    log = webhooks.delivery_log(rt, endpoint.id)
    assert log[0].outcome == "disabled" and log[0].status == 500
    assert all(x.outcome == "failed" and x.status == 500 for x in log[1:])
    tries = [x.at for x in reversed(log)]
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert min(gaps) >= 0.8 and max(gaps) >= 1.8, gaps  # backing off (1 s, then 2 s)

    # the tenant is told: the API, the CLI and (tests/integration/test_console.py) the console
    with TestClient(create_app(rt)) as client:
        auth = {"Authorization": f"Bearer {token}"}
        shown = client.get("/v1/webhooks", headers=auth).json()
        assert shown[0]["enabled"] is False and "failed" in shown[0]["disabled_reason"]
        assert shown[0]["waiting"] == 1
        logged = client.get(f"/v1/webhooks/{endpoint.id}/log", headers=auth).json()
        assert logged[0]["outcome"] == "disabled" and logged[0]["status"] == 500
    listed = subprocess.run(
        sealscribe("webhook", "list", "--tenant", tenant.id, "--json"),
        env={**os.environ, **stack},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(listed.stdout)[0]["disabled"].startswith("every delivery failed")

    # replay re-enables it: a receiver that works now gets the waiting message
    fixed = Receiver().start()
    try:
        rt.store.redis.hset(schema.webhook(endpoint.id), "url", fixed.url)
        replayed = subprocess.run(
            sealscribe("webhook", "replay", endpoint.id, "--tenant", tenant.id, "--json"),
            env={**os.environ, **stack},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert json.loads(replayed.stdout)["streams"] == 1
        wait_until(lambda: fixed.snapshot(), 15, "the replayed message")
    finally:
        fixed.stop()
    assert fixed.snapshot()[0].headers["webhook-id"] == got[0].headers["webhook-id"]
    assert not webhooks.get_endpoint(rt, endpoint.id).disabled


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://192.168.1.1:8080/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_a_forbidden_url_is_refused_at_creation(rt: Runtime, url: str) -> None:
    tenant, token = services.create_tenant(rt, "initech")
    with pytest.raises(InvalidInput) as info:
        webhooks.add_endpoint(rt, tenant.id, url)
    assert str(info.value) == webhooks.REFUSED
    with TestClient(create_app(rt)) as client:
        r = client.post(
            "/v1/webhooks", json={"url": url}, headers={"Authorization": f"Bearer {token}"}
        )
    assert r.status_code == 400 and r.json()["detail"] == webhooks.REFUSED
    assert rt.store.webhooks.list(tenant.id) == []


def test_a_forbidden_address_is_refused_at_delivery_without_sending(
    rt: Runtime, worker: WorkerProcess
) -> None:
    """This process allows ::1 (so the endpoint is made); the worker allows only 127.0.0.1,
    and refuses on the address it would connect to: the receiver on ::1 sees no connection."""
    tenant, _ = services.create_tenant(rt, "umbrella")
    receiver = Receiver("::1").start()
    try:
        endpoint, _ = webhooks.add_endpoint(rt, tenant.id, receiver.url)
        m = services.create_meeting(rt, tenant.id)
        services.set_transcription(rt, m.id, True)
        wait_until(lambda: len(webhooks.delivery_log(rt, endpoint.id)) >= 2, 20, "refused attempts")
        assert receiver.connections == 0 and not receiver.snapshot()
    finally:
        receiver.stop()
    log = webhooks.delivery_log(rt, endpoint.id)
    assert {x.outcome for x in log} == {"refused"}
    assert all(x.status == 0 and x.error == "refused by the egress policy" for x in log)


def test_bot_states_then_transcript_ready_once_every_segment_settled(
    rt: Runtime, worker: WorkerProcess
) -> None:
    """A bot requested and called back (no bot service runs it, so it leaves at once) while
    a recording's sealed segments still wait: "transcript ready" comes only after the worker
    transcribed the last of them (found by the beat's sweep), once, after "left", with the
    count of segments and not a word of what was said."""
    tenant, _ = services.create_tenant(rt, "wayne")
    receiver = Receiver().start()
    try:
        endpoint, secret = webhooks.add_endpoint(
            rt, tenant.id, receiver.url, ["bot.state_changed", "meeting.transcript_ready"]
        )
        m = services.create_meeting(rt, tenant.id, transcription=True)
        join_meeting(rt, m.id, "janus://127.0.0.1:8088/1234", tenant.id)
        with workers_paused():  # the bot leaves before the worker has finished
            job = submit_file(rt, CLIP, tenant.id, m.id)
            assert job.segments >= 1
            leave_meeting(rt, m.id, tenant.id)
            assert rt.store.segments.pending_count(m.id) == job.segments
        wait_until(
            lambda: any(b"transcript_ready" in r.body for r in receiver.snapshot()),
            120,
            "transcript ready",
        )
        time.sleep(2)  # a second announcement would come within the sweep's tick
        got = receiver.snapshot()
    finally:
        receiver.stop()
    bodies = _verified(secret, got)
    events = [
        (b["type"], b["data"].get("state") or b["data"].get("bot_state"))
        for b in {r.headers["webhook-id"]: b for r, b in zip(got, bodies, strict=True)}.values()
    ]
    assert events == [
        ("bot.state_changed", "requested"),
        ("bot.state_changed", "left"),
        ("meeting.transcript_ready", "left"),
    ], events
    ready = bodies[-1]["data"]
    assert ready["meeting_id"] == m.id
    assert ready["segments"] == rt.store.segments.transcript_count(m.id) >= 1
    assert rt.store.segments.pending_count(m.id) == 0
    said = words(" ".join(seg.text for seg in services.read_transcript(rt, m.id, tenant.id)))
    assert {"country", "ask"} <= said, said  # the clip really was transcribed
    sent = b" ".join(r.body for r in got).lower()
    assert not [w for w in ("country", "americans", "fellow") if w.encode() in sent]
    assert not webhooks.get_endpoint(rt, endpoint.id).failing_since


def test_the_workers_hook_announces_ready_when_the_last_segment_settles(rt: Runtime) -> None:
    """What the transcribe task calls after each batch (``segments_settled``): nothing while
    a segment waits, "transcript ready" once when none does, and never before the bot left."""
    tenant, _ = services.create_tenant(rt, "stark")
    endpoint, _ = webhooks.add_endpoint(
        rt, tenant.id, "http://127.0.0.1:9/nobody", ["meeting.transcript_ready"]
    )
    m = services.create_meeting(rt, tenant.id, transcription=True)
    waiting = schema.meeting_audio(m.id)  # a sealed segment still pending, as the index says
    rt.store.redis.zadd(waiting, {"alice.0": 0})

    def announced() -> list[str]:
        kept = rt.store.redis.hvals(schema.webhook_messages(endpoint.id))
        return [json.loads(k)["type"] for k in kept]

    webhooks.segments_settled(rt, [m.id])  # no bot yet: nothing to announce
    join_meeting(rt, m.id, "janus://127.0.0.1:8088/1234", tenant.id)
    leave_meeting(rt, m.id, tenant.id)
    webhooks.segments_settled(rt, [m.id, m.id])
    assert announced() == []  # the segment still waits
    rt.store.redis.zrem(waiting, "alice.0")
    webhooks.segments_settled(rt, [m.id, m.id])
    webhooks.segments_settled(rt, [m.id])
    assert announced() == ["meeting.transcript_ready"]  # once
    assert not rt.store.webhooks.is_awaiting(m.id)


def test_audit_heads_go_to_the_tenants_that_want_them(rt: Runtime) -> None:
    """The beat's audit-head task: each subscribed tenant gets its log's count and last
    hash, as ``audit verify`` sees them; a tenant that did not subscribe gets nothing."""
    wants, other = (services.create_tenant(rt, n)[0] for n in ("oscorp", "lexcorp"))
    endpoint, _ = webhooks.add_endpoint(rt, wants.id, "http://127.0.0.1:9/nobody", ["audit.head"])
    not_wanted, _ = webhooks.add_endpoint(
        rt, other.id, "http://127.0.0.1:9/nobody", ["key.rotated"]
    )
    # (this module's other tests leave tenants subscribed to every event in its database)
    assert webhooks.audit_heads(rt) >= 1
    kept = [json.loads(v) for v in rt.store.redis.hvals(schema.webhook_messages(endpoint.id))]
    assert [k["type"] for k in kept] == ["audit.head"]
    assert not rt.store.redis.hvals(schema.webhook_messages(not_wanted.id))
    count, last = rt.store.audit.audit_head(wants.id)
    data = kept[0]["data"]
    assert (data["tenant_id"], data["count"], data["hash"]) == (wants.id, count, last)
    assert data["mac"].startswith("local:v1:")
    # the event's data is a head `audit verify --since` takes
    assert services.audit_verify(rt, wants.id, AuditHead.from_json(json.dumps(data))).ok


def test_the_outbox_on_the_tests_store_leaves_only_entries_that_point_at_nothing(
    redis_client: redis.Redis,
) -> None:
    """The store's steps on the tests' Redis (a cluster's, with ``SEALSCRIBE_TEST_REDIS_URL``:
    each step one slot): a stream is due while it holds messages and only then; what a crash
    between two steps can leave (an id without its endpoint, a due stream of an endpoint
    deleted or disabled) is skipped and dropped by the readers."""
    store = WebhookStore(redis_client)
    endpoint = Endpoint(store.new_id(), "t_0123456789abcdef", "http://127.0.0.1:9/x", ("*",), 1.0)
    store.create(endpoint)
    store.enqueue(endpoint.id, "m_1", store.new_message_id(), '{"type":"a"}')
    store.enqueue(endpoint.id, "-", store.new_message_id(), '{"type":"b"}')
    assert sorted((e, s) for e, s, _ in store.due(time.time())) == [
        (endpoint.id, "-"),
        (endpoint.id, "m_1"),
    ]
    head = store.head(endpoint.id, "-")
    assert head is not None and not store.done(endpoint.id, "-", head.id)
    assert store.due_at(endpoint.id, "-") is None and store.streams(endpoint.id) == ["m_1"]

    redis_client.sadd(schema.tenant_webhooks(endpoint.tenant_id), "wh_0000000000000000")
    assert [e.id for e in store.list(endpoint.tenant_id)] == [endpoint.id]
    assert store.count(endpoint.tenant_id) == 1
    assert redis_client.scard(schema.tenant_webhooks(endpoint.tenant_id)) == 1  # dropped
    redis_client.zadd(schema.WEBHOOKS_DUE, {"wh_0000000000000000/m_1": 1.0})
    store.disable(endpoint.id, "failing", time.time())
    redis_client.zadd(schema.WEBHOOKS_DUE, {f"{endpoint.id}/m_1": 1.0})  # left by a crash
    assert store.due(time.time()) == []
    assert redis_client.zcard(schema.WEBHOOKS_DUE) == 0  # dropped
    store.enable(endpoint.id)
    assert store.schedule_all(endpoint.id, time.time()) == 1
    store.delete(endpoint)
    assert store.list(endpoint.tenant_id) == [] and store.due(time.time()) == []
    assert not redis_client.exists(
        schema.webhook(endpoint.id), schema.webhook_stream(endpoint.id, "m_1")
    )
