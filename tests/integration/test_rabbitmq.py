"""RabbitMQ as the broker (``SEALSCRIBE_BROKER_URL=amqp://...``), against the real server:
the queues senders and workers declare are durable quorum queues (a classic declaration of
the same name is refused), the queue depth the API exports and KEDA reads counts RabbitMQ's
messages, and an interim caption gives way while a final segment waits, which is the order
the Redis transport gives. The worker, scale-out and fault suites run whole on RabbitMQ in
CI's broker stage (``SEALSCRIBE_TEST_BROKER_URL``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kombu.entity import Queue

from pipeline import queue
from pipeline.queue import INTERIM_QUEUE, QUEUE
from pipeline.runtime import Runtime
from pipeline.services.health import queue_depth
from tests.harness.processes import purge_broker
from tests.harness.rabbitmq import require_rabbitmq


@pytest.fixture
def rabbit() -> Iterator[str]:
    """This process sends to the test vhost, emptied before and after."""
    url = require_rabbitmq()
    purge_broker(url)
    previous = queue.use_broker(url)
    try:
        yield url
    finally:
        purge_broker(url)
        queue.use_broker(previous)


def test_queues_are_durable_quorum_queues(rabbit: str) -> None:
    queue.enqueue_transcribe("m-quorum", "s-0")  # the sender declares what it sends to
    queue.enqueue_interim("m-quorum", "alice")
    assert queue.waiting(QUEUE) == 1 and queue.waiting(INTERIM_QUEUE) == 1
    with queue.client().connection_for_write() as conn:
        for name in (QUEUE, INTERIM_QUEUE):
            classic = Queue(name, routing_key=name, channel=conn.channel())  # type: ignore[no-untyped-call]
            with pytest.raises(conn.channel_errors, match="x-queue-type"):  # PRECONDITION_FAILED
                classic.declare()  # type: ignore[no-untyped-call]


def test_the_exported_queue_depth_counts_rabbitmqs_messages(rabbit: str, rt: Runtime) -> None:
    for n in range(3):
        queue.enqueue_transcribe("m-depth", f"s-{n}")
    queue.enqueue_interim("m-depth", "alice")  # interims are not what workers scale on
    assert queue_depth(rt) == (0, 3)  # no sealed segment pending in the store; 3 messages


def test_an_interim_gives_way_while_a_final_waits(rabbit: str) -> None:
    from workers.interim import transcribe_interim

    assert not queue.finals_waiting()
    queue.enqueue_transcribe("m-order", "s-0")
    assert queue.finals_waiting()
    # the task returns before it reads the store: the interim's audio stays for the next
    assert transcribe_interim.run("m-order", "alice") == "finals-first"
    purge_broker(rabbit)
    assert not queue.finals_waiting()
