"""Hash tags: every key of one meeting (tenant, webhook endpoint) hashes to one slot, as a
Redis Cluster's transactions and scripts need; the migration's renames; Cluster URLs."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
from redis.crc import key_slot

from pipeline.errors import InvalidInput
from pipeline.store import schema
from pipeline.store.connection import ClusterUrl


def _keys_of(first_param: str, entity: str) -> list[str]:
    """Every key function of ``schema`` whose first argument is ``first_param``, called
    with ``entity`` (and a sample for any other argument)."""
    out = []
    for name, fn in inspect.getmembers(schema, inspect.isfunction):
        if name.startswith("_") or fn.__module__ != schema.__name__:
            continue
        params = list(inspect.signature(fn).parameters)
        if not params or params[0] != first_param or "member" in name or "parse" in name:
            continue
        key = fn(entity, *["x.1"] * (len(params) - 1))
        if isinstance(key, str) and key.startswith(schema.PREFIX):
            out.append(key)
    return out


@pytest.mark.parametrize(
    ("param", "entity", "at_least"),
    [("meeting_id", "m_0123456789abcdef", 20), ("tenant_id", "t_0123456789abcdef", 8),
     ("endpoint_id", "wh_0123456789abcdef", 8)],
)  # fmt: skip
def test_every_key_of_one_entity_is_in_one_slot(param: str, entity: str, at_least: int) -> None:
    keys = _keys_of(param, entity)
    assert len(keys) >= at_least
    assert {key_slot(k.encode()) for k in keys} == {key_slot(entity.encode())}


def test_the_sockets_and_whip_leases_of_a_meeting_are_counted_in_its_tenants_slot() -> None:
    t, m = "t_1", "m_2"
    for meeting_key, tenant_key in (
        (schema.sockets_meeting(t, m), schema.sockets_tenant(t)),
        (schema.whip_meeting(t, m), schema.whip_tenant(t)),
    ):
        assert key_slot(meeting_key.encode()) == key_slot(tenant_key.encode())


def test_meetings_spread_over_slots() -> None:
    slots = {key_slot(schema.meeting(f"m_{i:016x}").encode()) for i in range(200)}
    assert len(slots) > 150


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("ss:meeting:m_1", "ss:meeting:{m_1}"),
        ("ss:meeting:m_1:keys", "ss:meeting:{m_1}:keys"),
        ("ss:audio:m_1:p.3", "ss:audio:{m_1}:p.3"),
        ("ss:audio:m_1:Bob {x}.3", "ss:audio:{m_1}:Bob {x}.3"),
        ("ss:audio:{m_1}:Bob {x}.3", "ss:audio:{m_1}:Bob {x}.3"),
        ("ss:transcript:m_1:p.3", "ss:transcript:{m_1}:p.3"),
        ("ss:tenant:t_1:tokens", "ss:tenant:{t_1}:tokens"),
        ("ss:audit:t_1:head", "ss:audit:{t_1}:head"),
        ("ss:bot:m_1:owner", "ss:bot:{m_1}:owner"),
        ("ss:whip:meeting:m_1:owner", "ss:whip:meeting:{m_1}:owner"),
        ("ss:webhook:wh_1:q:m_2", "ss:webhook:{wh_1}:q:m_2"),
        ("ss:webhooks:ready:m_1", "ss:webhooks:ready:{m_1}"),
        ("ss:sockets:tenant:t_1", "ss:sockets:tenant:{t_1}"),
        ("ss:sockets:meeting:m_1", None),
        ("ss:whip:meeting:m_1", None),
        ("ss:pending", "ss:pending"),
        ("ss:token:abc", "ss:token:abc"),
        ("ss:meeting:{m_1}", "ss:meeting:{m_1}"),
        ("sealscribe", "sealscribe"),
    ],
)
def test_tagged_names_what_a_key_from_before_the_tags_is_now(old: str, new: str | None) -> None:
    assert schema.tagged(old) == new


def test_a_cluster_url_names_nodes_and_never_quotes_its_password() -> None:
    url = ClusterUrl.parse("redis+cluster://u:s%3Bcret@10.0.0.1:7000,[::1]:7001")
    assert url.nodes == (("10.0.0.1", 7000), ("::1", 7001))
    assert (url.username, url.password) == ("u", "s;cret")
    for bad, says in [
        ("redis+cluster://h:7000/0", "names nodes only"),
        ("redis+cluster://h", "HOST:PORT"),
        ("redis://h:7000", "starts with"),
    ]:
        with pytest.raises(InvalidInput, match=says):
            ClusterUrl.parse(bad)
    with pytest.raises(InvalidInput) as raised:
        ClusterUrl.parse("redis+cluster://:hunter2@[bad:7000")
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("make", [schema.audio, schema.transcript, schema.lease])
def test_a_segment_key_gives_back_its_meeting_and_segment(make: Callable[[str, str], str]) -> None:
    assert schema.split_segment_key(make("m_1", "al:ice.3#2")) == ("m_1", "al:ice.3#2")
    with pytest.raises(ValueError):
        schema.split_segment_key(schema.meeting("m_1"))
