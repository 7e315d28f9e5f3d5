"""Sending work to the workers: task names, ids only, through a send-only Celery client.

Everything below the top layers that queues work (capture, the services, the CLI) comes
through here; nothing here imports ``workers``, faster-whisper or the task code. The client is
made on first use from the settings, and :func:`use_broker` makes a new one for another
broker URL (the demo's private Redis, a test's database).

The broker is the store's Redis unless ``SEALSCRIBE_BROKER_URL`` names another Redis or a
RabbitMQ. :func:`broker_conf` holds what depends on which, for senders and workers alike:

* **Redis** (or a primary Redis Sentinel watches: kombu's ``sentinel://`` transport, which
  follows failovers): two lists; a worker takes from them in name order, so a final segment
  (:data:`QUEUE`) is always taken before an interim caption (:data:`INTERIM_QUEUE`), and a
  message a killed worker held comes back after the visibility timeout.
* **RabbitMQ**: two durable quorum queues (replicated on a cluster, on disk on one node);
  each publish waits for the broker's confirm, so a message the API or capture has sent is
  not lost with a broker restart; a killed worker's unacknowledged message comes back as soon
  as its connection closes. A quorum queue has no priorities (RabbitMQ 3.x) and a worker
  consumes both queues at once, so the interim task itself gives way: it runs only while no
  final segment waits (:func:`finals_waiting`), which is the order Redis gives.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue
from kombu.exceptions import ChannelError

from pipeline.config import get_settings
from pipeline.store import schema
from pipeline.store.connection import SENTINEL_SCHEME, SentinelUrl

__all__ = [
    "INTERIM_QUEUE",
    "PURGE",
    "QUEUE",
    "SHRED",
    "SHRED_RETRY",
    "TASK_EXCHANGE",
    "TRANSCRIBE",
    "TRANSCRIBE_INTERIM",
    "WEBHOOK_AUDIT_HEADS",
    "WEBHOOK_DELIVER",
    "WEBHOOK_SWEEP",
    "broker_conf",
    "client",
    "enqueue_interim",
    "enqueue_shred",
    "enqueue_transcribe",
    "enqueue_webhook",
    "finals_waiting",
    "is_amqp",
    "use_broker",
    "waiting",
    "workers_alive",
]

TRANSCRIBE = "sealscribe.transcribe"
TRANSCRIBE_INTERIM = "sealscribe.transcribe-interim"
PURGE = "sealscribe.purge"
SHRED = "sealscribe.shred"
SHRED_RETRY = "sealscribe.shred-retry"
#: deliver the head of one webhook endpoint's stream (endpoint id, stream: ids only)
WEBHOOK_DELIVER = "sealscribe.webhook-deliver"
#: the beat's sweep: deliveries whose next try has come, meetings whose transcript is ready
WEBHOOK_SWEEP = "sealscribe.webhook-sweep"
#: the beat's periodic audit head event
WEBHOOK_AUDIT_HEADS = "sealscribe.webhook-audit-heads"
QUEUE = schema.CELERY_QUEUE
#: interim captions wait here; a worker takes from it only when :data:`QUEUE` is empty
INTERIM_QUEUE = schema.CELERY_INTERIM_QUEUE
#: seconds after which an interim's message is discarded unrun (its caption is stale)
INTERIM_EXPIRES = 20

_lock = threading.Lock()
_client: Celery | None = None
#: the URL the client was made for, as given (kombu's spelling of a Sentinel URL differs)
_client_url: str | None = None


def is_amqp(url: str) -> bool:
    """Whether ``url`` is a RabbitMQ broker (else a Redis one)."""
    return url.startswith(("amqp://", "amqps://"))


#: RabbitMQ: the topic exchange both queues are bound to, each by its own name. A topic
#: exchange, not a direct one, so that Celery's native delayed delivery can route a task
#: sent with a countdown (a deferred batch member, a webhook retry) back to its queue through
#: RabbitMQ: a delayed message held by the worker itself would take its one prefetch slot,
#: which a quorum queue cannot raise, and starve it.
TASK_EXCHANGE = "sealscribe.tasks"


def _host(host: str) -> str:
    """``host`` as a URL writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def _quorum(name: str) -> Queue:
    """A durable quorum queue ``name``, bound by its own name to :data:`TASK_EXCHANGE`."""
    exchange = Exchange(TASK_EXCHANGE, type="topic", durable=True)  # type: ignore[no-untyped-call]
    arguments = {"x-queue-type": "quorum"}
    return Queue(name, exchange, routing_key=name, queue_arguments=arguments)  # type: ignore[no-untyped-call]


def broker_conf(url: str, visibility_timeout: int) -> dict[str, Any]:
    """The Celery settings that follow from the broker at ``url``, the same for every
    sender and worker (a queue declared differently by two of them would be refused)."""
    conf: dict[str, Any] = {
        "broker_url": url,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": QUEUE,
    }
    sentinel: dict[str, Any] = {}
    if url.startswith(SENTINEL_SCHEME):  # kombu's spelling: one sentinel:// URL each
        where = SentinelUrl.parse(url)
        conf["broker_url"] = ";".join(
            f"sentinel://{where.userinfo()}{_host(host)}:{port}/{where.db}"
            for host, port in where.sentinels
        )
        sentinel = {"master_name": where.service}
    if is_amqp(url):
        conf.update(
            task_queues=tuple(_quorum(name) for name in (QUEUE, INTERIM_QUEUE)),
            task_default_queue_type="quorum",
            task_default_exchange=TASK_EXCHANGE,
            task_default_exchange_type="topic",
            task_default_routing_key=QUEUE,
            # a publish returns once RabbitMQ has the message (in a quorum queue: on a
            # majority of its replicas), not when it left this process
            broker_transport_options={"confirm_publish": True},
        )
        return conf
    conf["broker_transport_options"] = {
        **sentinel,
        "visibility_timeout": visibility_timeout,
        # kombu sweeps for messages a dead worker left unacknowledged only every
        # interval * throttle seconds (100 s by default): sweep often enough that they
        # come back soon after the visibility timeout (one cheap ZRANGE per sweep).
        "unacked_restore_interval": max(1, min(10, visibility_timeout // 10)),
        "unacked_restore_throttle": 1,
        # queues in name order, not round robin: "sealscribe" (final segments) before
        # "sealscribe-interim", so an interim caption never waits in front of a final
        "queue_order_strategy": "sorted",
    }
    return conf


def _make(url: str) -> Celery:
    sender = Celery("sealscribe-client", set_as_current=False)
    sender.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        **broker_conf(url, get_settings().visibility_timeout),
    )
    return sender


def client() -> Celery:
    """This process's send-only Celery client (no tasks, no result backend)."""
    global _client, _client_url
    with _lock:
        if _client is None:
            _client_url = get_settings().broker
            _client = _make(_client_url)
        return _client


def use_broker(url: str) -> str:
    """Send to ``url`` from now on; returns the URL used before (as it was given). The old
    client's connections are released."""
    global _client, _client_url
    with _lock:
        old, previous = _client, _client_url
        _client, _client_url = _make(url), url
    if old is None or previous is None:
        return get_settings().broker
    old.close()
    return previous


def enqueue_transcribe(meeting_id: str, segment_id: str) -> None:
    """Queue one sealed audio segment for transcription (ids only, never content)."""
    client().send_task(TRANSCRIBE, args=[meeting_id, segment_id], ignore_result=True)


def enqueue_interim(meeting_id: str, participant_id: str) -> None:
    """Queue the transcription of a participant's newest interim audio (ids only), on the
    interim queue, behind every final segment."""
    client().send_task(
        TRANSCRIBE_INTERIM,
        args=[meeting_id, participant_id],
        queue=INTERIM_QUEUE,
        expires=INTERIM_EXPIRES,
        ignore_result=True,
    )


def enqueue_shred(tenant_id: str) -> None:
    """Queue the rotation and retirement of a tenant's key after a meeting delete (the
    tenant id only)."""
    client().send_task(SHRED, args=[tenant_id], ignore_result=True)


def enqueue_webhook(endpoint_id: str, stream: str, countdown: float = 0) -> None:
    """Queue the delivery of a webhook stream's waiting events (ids only: the events wait
    in Redis), after ``countdown`` seconds."""
    client().send_task(
        WEBHOOK_DELIVER,
        args=[endpoint_id, stream],
        # whole seconds, rounded up: never early, and RabbitMQ's delayed delivery (quorum
        # queues) takes whole seconds only, refusing a countdown under one
        countdown=math.ceil(countdown) if countdown > 0 else None,
        ignore_result=True,
    )


def waiting(name: str = QUEUE) -> int:
    """Messages waiting in the broker's queue ``name`` (taken ones not counted)."""
    sender = client()
    with sender.pool.acquire(block=True) as conn:
        try:
            return int(conn.default_channel.queue_declare(queue=name, passive=True).message_count)
        except ChannelError:  # not declared yet (Redis: no list while it is empty)
            if is_amqp(str(sender.conf.broker_url)):
                conn.close()  # RabbitMQ closed the channel: start afresh next time
            return 0


def finals_waiting() -> bool:
    """Whether a final segment's message waits on RabbitMQ, so that an interim should give
    way (:data:`QUEUE` before :data:`INTERIM_QUEUE`, as the Redis transport's order gives).
    Always False on Redis, whose workers take interims only from an empty final queue, and
    when the broker cannot answer (the interim then runs: it is the cheap choice)."""
    sender = client()
    if not is_amqp(str(sender.conf.broker_url)):
        return False
    try:
        return waiting(QUEUE) > 0
    except Exception:  # socket, kombu or py-amqp errors alike: the broker did not answer
        return False


def workers_alive(timeout: float = 1.0) -> int:
    """How many workers answer a ping."""
    return len(client().control.ping(timeout=timeout) or [])
