"""Which broker Celery's messages wait in: the store's Redis by default, another Redis or
RabbitMQ by ``SEALSCRIBE_BROKER_URL``; and what each needs (queues, redelivery, order)."""

from __future__ import annotations

import pytest

from pipeline.config import Settings
from pipeline.errors import InvalidInput
from pipeline.queue import INTERIM_QUEUE, QUEUE, TASK_EXCHANGE, broker_conf, is_amqp
from pipeline.store.connection import SentinelUrl

AMQP = "amqp://sealscribe:s3cret-pw@rabbit.example:5672/meetings"


def test_the_broker_is_the_store_unless_named() -> None:
    store = "redis://127.0.0.1:6379/3"
    assert Settings.from_env({"SEALSCRIBE_REDIS_URL": store}).broker == store
    named = Settings.from_env({"SEALSCRIBE_REDIS_URL": store, "SEALSCRIBE_BROKER_URL": AMQP})
    assert named.broker == AMQP and named.redis_url == store
    blank = Settings.from_env({"SEALSCRIBE_REDIS_URL": store, "SEALSCRIBE_BROKER_URL": " "})
    assert blank.broker == store


@pytest.mark.parametrize(
    "url", ["http://rabbit:15672/", "sqs://key:secret@", "kafka://k:9092", "rabbit:5672"]
)
def test_an_unknown_broker_is_refused_without_repeating_its_credentials(url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        Settings.from_env({"SEALSCRIBE_BROKER_URL": url})
    message = str(refused.value)
    assert "amqp://" in message and "redis://" in message
    assert "secret" not in message and url not in message


def test_rabbitmq_gets_durable_quorum_queues_and_publisher_confirms() -> None:
    conf = broker_conf(AMQP, 600)
    assert is_amqp(AMQP) and conf["broker_url"] == AMQP
    queues = {q.name: q for q in conf["task_queues"]}
    assert set(queues) == {QUEUE, INTERIM_QUEUE}
    for name, q in queues.items():
        assert q.queue_arguments == {"x-queue-type": "quorum"}
        assert q.durable and not q.auto_delete and q.routing_key == name
        # a topic exchange: Celery routes countdown tasks through RabbitMQ's delayed
        # delivery only then (a direct one would leave them held by a worker)
        assert (q.exchange.name, q.exchange.type) == (TASK_EXCHANGE, "topic")
    assert conf["task_default_queue_type"] == "quorum"
    assert conf["broker_transport_options"] == {"confirm_publish": True}


def test_redis_takes_finals_first_and_redelivers_after_the_visibility_timeout() -> None:
    conf = broker_conf("redis://127.0.0.1:6379/0", 600)
    options = conf["broker_transport_options"]
    assert (
        options["queue_order_strategy"] == "sorted" and sorted([INTERIM_QUEUE, QUEUE])[0] == QUEUE
    )
    assert options["visibility_timeout"] == 600
    assert options["unacked_restore_interval"] == 10  # a tenth of it, at most 10 s
    assert (
        broker_conf("redis://h/0", 20)["broker_transport_options"]["unacked_restore_interval"] == 2
    )
    assert "task_queues" not in conf and not is_amqp("rediss://h:6380/0")


def test_a_sentinel_url_names_its_sentinels_service_database_and_password() -> None:
    url = "redis+sentinel://:pw%40x@10.0.0.1:26379,[::1]:26380/sealscribe/3"
    where = SentinelUrl.parse(url)
    assert where.sentinels == (("10.0.0.1", 26379), ("::1", 26380))
    assert (where.service, where.db, where.password, where.username) == (
        "sealscribe",
        3,
        "pw@x",
        None,
    )
    assert SentinelUrl.parse("redis+sentinel://h:1/s").db == 0
    assert Settings.from_env({"SEALSCRIBE_REDIS_URL": url}).broker == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://:hunter2@h:26379", "/SERVICE"),
        ("redis+sentinel://:hunter2@h:26379/s/x", "/SERVICE/DB"),
        ("redis+sentinel://:hunter2@h/s", "HOST:PORT"),
        ("redis+sentinel://:hunter2@h:99999/s", "HOST:PORT"),
        ("memcached://:hunter2@h:1/", "must start with"),
    ],
)
def test_a_bad_store_url_is_refused_precisely_without_its_password(url: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says) as refused:
        Settings.from_env({"SEALSCRIBE_REDIS_URL": url})
    assert "hunter2" not in str(refused.value)


def test_a_sentinel_store_is_also_kombus_sentinel_broker() -> None:
    conf = broker_conf("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/sealscribe/2", 60)
    assert conf["broker_url"] == ("sentinel://:pw@10.0.0.1:26379/2;sentinel://:pw@10.0.0.2:26379/2")
    options = conf["broker_transport_options"]
    assert options["master_name"] == "sealscribe" and options["visibility_timeout"] == 60


def test_kombus_sentinel_urls_keep_ipv6_hosts_and_odd_passwords_whole() -> None:
    url = "redis+sentinel://:p%3Bw%40d@[::1]:26379,10.0.0.2:26380/sealscribe/1"
    conf = broker_conf(url, 60)
    assert conf["broker_url"] == (
        "sentinel://:p%3Bw%40d@[::1]:26379/1;sentinel://:p%3Bw%40d@10.0.0.2:26380/1"
    )
    from kombu.utils.url import url_to_parts

    first = url_to_parts(conf["broker_url"].split(";")[0])
    assert (first.hostname, first.port, first.password) == ("::1", 26379, "p;w@d")


def test_a_password_that_breaks_the_url_is_refused_without_repeating_it() -> None:
    with pytest.raises(InvalidInput, match="percent-encode") as refused:
        Settings.from_env({"SEALSCRIBE_REDIS_URL": "redis+sentinel://:my[secret]pw@h:1/s"})
    assert "secret" not in str(refused.value)


def test_a_replica_wait_longer_than_the_socket_timeout_is_refused() -> None:
    assert Settings.from_env({"SEALSCRIBE_REDIS_WAIT_MS": "10000"}).redis_wait_ms == 10000
    with pytest.raises(InvalidInput, match="at most 10000"):
        Settings.from_env({"SEALSCRIBE_REDIS_WAIT_MS": "30000"})
