"""The webhook tasks: deliver one endpoint's stream, the beat's sweep, audit head events.

Arguments are ids (an endpoint id and a stream: a meeting id or ``-``); the events wait in
Redis (:mod:`pipeline.store.webhooks`) and the rules live in
:mod:`pipeline.services.webhook_delivery`. Tasks acknowledge late: a worker lost mid-delivery
leaves the message at the head of its stream, and the beat's sweep sends it again.

Its metrics (deliveries by event and outcome, the age of what is delivered) are in
:mod:`workers.metrics`.
"""

from __future__ import annotations

import logging
import os
import socket

from pipeline.queue import WEBHOOK_AUDIT_HEADS, WEBHOOK_DELIVER, WEBHOOK_SWEEP, enqueue_webhook
from pipeline.services.webhook_delivery import deliver_stream, sweep
from pipeline.services.webhooks import EVENTS, audit_heads
from workers import metrics
from workers.app import app
from workers.tasks import runtime

__all__ = ["audit_head_events", "deliver", "sweep_due"]

log = logging.getLogger(__name__)

_EVENTS = frozenset(EVENTS)
#: a failed stream's retry is queued as a delayed task when it is this soon; later ones are
#: left to the beat's sweep (a delayed Redis message longer than the visibility timeout
#: would be redelivered early)
_REQUEUE_WITHIN = 60.0


def _count(event: str, outcome: str, age: float) -> None:
    metrics.count_webhook(event, _EVENTS, outcome, age)


@app.task(name=WEBHOOK_DELIVER, acks_late=True)
def deliver(endpoint_id: str, stream: str) -> None:
    """Send the waiting events of one endpoint's stream, in order."""
    holder = f"{socket.gethostname()}:{os.getpid()}"
    again = deliver_stream(runtime(), endpoint_id, stream, holder, _count)
    if again is not None and again <= _REQUEUE_WITHIN:
        enqueue_webhook(endpoint_id, stream, countdown=again)


@app.task(name=WEBHOOK_SWEEP, acks_late=True)
def sweep_due() -> int:
    """Periodic (Celery beat, every ``SEALSCRIBE_WEBHOOK_TICK_S``): queue due deliveries,
    announce transcripts that became ready."""
    return sweep(runtime())


@app.task(name=WEBHOOK_AUDIT_HEADS, acks_late=True)
def audit_head_events() -> int:
    """Periodic (every ``SEALSCRIBE_WEBHOOK_AUDIT_HEAD_S``): each tenant's audit head."""
    return audit_heads(runtime())
