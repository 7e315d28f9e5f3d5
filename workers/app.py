"""The Celery application: tasks that take ids only, on Redis or RabbitMQ.

The app object exists at import (``celery -A workers.app:app`` finds it there) but is
configured late, from the settings and the fault registry, the first time Celery reads its
configuration: importing this module reads no environment and no fault flag.

Reliability settings (celery task guide): tasks acknowledge late and are rejected back to
the queue when their worker process dies, one message is prefetched at a time, and an
unacknowledged message is redelivered (on Redis after ``SEALSCRIBE_VISIBILITY`` seconds,
found by a sweep every tenth of that; on RabbitMQ when the dead worker's connection closes:
:func:`pipeline.queue.broker_conf`). Results are
not stored: tasks return nothing of interest, and progress is read from the sealed store.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import setup_logging

from pipeline import faults
from pipeline.config import get_settings
from pipeline.queue import PURGE, SHRED_RETRY, WEBHOOK_AUDIT_HEADS, WEBHOOK_SWEEP, broker_conf

__all__ = ["app"]


def _configuration() -> dict[str, Any]:
    settings = get_settings()
    return {
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        # a task is acknowledged only once done, so a worker killed mid-batch loses nothing
        # (off only with the ``worker-owns-work`` fault, which proves tests/faults see the loss)
        "task_acks_late": not faults.on("worker-owns-work"),
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        # the broker (Redis or RabbitMQ), its queues and how it redelivers: pipeline.queue
        **broker_conf(settings.broker, settings.visibility_timeout),
        "worker_send_task_events": False,
        "beat_schedule": {
            "retention-purge": {"task": PURGE, "schedule": float(settings.purge_interval)},
            # meeting deletes whose key rotation failed or was lost (a KMS outage)
            "shred-retry": {"task": SHRED_RETRY, "schedule": float(settings.shred_retry)},
            # webhook streams whose next try has come; transcripts that became ready
            "webhook-sweep": {
                "task": WEBHOOK_SWEEP,
                "schedule": float(settings.webhooks.tick_s),
                "options": {"expires": float(settings.webhooks.tick_s)},
            },
            "webhook-audit-heads": {
                "task": WEBHOOK_AUDIT_HEADS,
                "schedule": float(settings.webhooks.audit_head_s),
            },
        },
        "beat_schedule_filename": str(settings.home / "celerybeat-schedule"),
    }


app = Celery("sealscribe", include=["workers.tasks", "workers.interim", "workers.webhooks"])
app.add_defaults(_configuration)  # evaluated when the configuration is first read


@setup_logging.connect
def _configure_logging(loglevel: Any = None, **_: Any) -> None:
    """Our logging, not Celery's: every handler carries the redaction filter."""
    from pipeline.logs import configure_logging

    level = logging.getLevelName(loglevel) if isinstance(loglevel, str) else loglevel
    configure_logging(get_settings().log_dir, level or logging.INFO, name="worker")
