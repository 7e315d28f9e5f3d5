"""The audit chain as stored in Redis: tampering done in Redis is caught and named."""

from __future__ import annotations

import json

import redis

from pipeline import services
from pipeline.runtime import Runtime
from pipeline.store import schema
from pipeline.store.connection import as_str


def setup_log(rt: Runtime) -> str:
    tenant, _ = services.create_tenant(rt, "Acme")
    for _ in range(2):
        services.create_meeting(rt, tenant.id)
    services.rotate_keys(rt, tenant.id)
    return tenant.id  # 1 create + 4 wraps + 1 rotate + 4 rewraps = 10 entries


def test_every_key_use_is_recorded(rt: Runtime) -> None:
    tid = setup_log(rt)
    entries = services.audit_show(rt, tid, limit=100)
    assert [e.action for e in entries] == (["create"] + ["wrap"] * 4 + ["rotate"] + ["rewrap"] * 4)
    assert all(e.actor == "test" and e.outcome == "ok" for e in entries)
    assert {e.purpose for e in entries if e.action == "rewrap"} == {"rewrap"}
    assert services.audit_verify(rt, tid).ok
    assert [e.seq for e in services.audit_show(rt, tid, offset=8, limit=5)] == [8, 9]


def test_edit_insert_delete_in_redis_are_caught(rt: Runtime, redis_client: redis.Redis) -> None:
    tid = setup_log(rt)
    key = schema.audit(tid)
    original = [as_str(e) for e in redis_client.lrange(key, 0, -1)]

    doc = json.loads(original[4])
    doc["actor"] = "someone-else"
    redis_client.lset(key, 4, json.dumps(doc))
    assert services.audit_verify(rt, tid).problems == ("entry 4 was edited",)

    redis_client.delete(key)
    redis_client.rpush(key, *original)
    redis_client.linsert(key, "BEFORE", original[6], original[2])
    assert (
        "entry 2 at position 6 was inserted (expected entry 6)"
        in services.audit_verify(rt, tid).problems
    )

    redis_client.delete(key)
    redis_client.rpush(key, *original)
    redis_client.lrem(key, 1, original[7])
    assert services.audit_verify(rt, tid).problems == ("entry 7 deleted",)

    redis_client.delete(key)
    redis_client.rpush(key, *original[:-1])
    assert services.audit_verify(rt, tid).problems == (
        "the last 1 entries (from entry 9) were deleted",
    )
