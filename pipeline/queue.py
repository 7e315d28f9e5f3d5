"""Sending work to the workers: task names, ids only, through a send-only Celery client.

Everything below the top layers that queues work (capture, the services, the CLI) comes
through here; nothing here imports ``workers``, faster-whisper or the task code. The client is
made on first use from the settings, and :func:`use_broker` makes a new one for another
broker URL (the demo's private Redis, a test's database).
"""

from __future__ import annotations

import threading

from celery import Celery

from pipeline.config import get_settings
from pipeline.store import schema

__all__ = [
    "INTERIM_QUEUE",
    "PURGE",
    "QUEUE",
    "SHRED",
    "SHRED_RETRY",
    "TRANSCRIBE",
    "TRANSCRIBE_INTERIM",
    "WEBHOOK_AUDIT_HEADS",
    "WEBHOOK_DELIVER",
    "WEBHOOK_SWEEP",
    "client",
    "enqueue_interim",
    "enqueue_shred",
    "enqueue_transcribe",
    "enqueue_webhook",
    "use_broker",
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


def _make(url: str) -> Celery:
    sender = Celery("sealscribe-client", broker=url, set_as_current=False)
    sender.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
    )
    return sender


def client() -> Celery:
    """This process's send-only Celery client (no tasks, no result backend)."""
    global _client
    with _lock:
        if _client is None:
            _client = _make(get_settings().redis_url)
        return _client


def use_broker(url: str) -> str:
    """Send to ``url`` from now on; returns the URL used before. The old client's
    connections are released."""
    global _client
    with _lock:
        old, _client = _client, _make(url)
    if old is None:
        return get_settings().redis_url
    previous = str(old.conf.broker_url)
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
        countdown=countdown or None,
        ignore_result=True,
    )


def workers_alive(timeout: float = 1.0) -> int:
    """How many workers answer a ping."""
    return len(client().control.ping(timeout=timeout) or [])
