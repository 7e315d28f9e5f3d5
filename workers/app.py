"""The Celery application: Redis as broker and result backend, tasks that take ids only.

Reliability settings (celery task guide): tasks acknowledge late and are rejected back to
the queue when their worker process dies, one message is prefetched at a time, and an
unacknowledged message is redelivered after ``SEALSCRIBE_VISIBILITY`` seconds (a worker
killed with SIGKILL), found by a sweep every tenth of that (at most every 10 s). Results are
not stored: tasks return nothing of interest, and progress is read from the sealed store.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import setup_logging

from pipeline import faults
from pipeline.config import get_settings
from pipeline.store import schema

__all__ = ["app"]

TRANSCRIBE = "sealscribe.transcribe"
PURGE = "sealscribe.purge"


#: a task is acknowledged only once done, so a worker killed mid-batch loses nothing (off
#: only with the ``worker-owns-work`` fault, which proves tests/faults can see the loss)
LEASED = not faults.on("worker-owns-work")


def make_app() -> Celery:
    settings = get_settings()
    celery = Celery(
        "sealscribe",
        broker=settings.redis_url,
        backend=settings.redis_url,
        include=["workers.tasks"],
    )
    celery.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=LEASED,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # kombu sweeps for messages a dead worker left unacknowledged only every
            # interval * throttle seconds (100 s by default): sweep often enough that they
            # come back soon after the visibility timeout (one cheap ZRANGE per sweep).
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 10)),
            "unacked_restore_throttle": 1,
        },
        task_default_queue=schema.CELERY_QUEUE,
        worker_send_task_events=False,
        beat_schedule={
            "retention-purge": {"task": PURGE, "schedule": float(settings.purge_interval)}
        },
        beat_schedule_filename=str(settings.home / "celerybeat-schedule"),
    )
    return celery


app = make_app()


@setup_logging.connect
def _configure_logging(loglevel: Any = None, **_: Any) -> None:
    """Our logging, not Celery's: every handler carries the redaction filter."""
    from pipeline.logs import configure_logging

    level = logging.getLevelName(loglevel) if isinstance(loglevel, str) else loglevel
    configure_logging(get_settings().log_dir, level or logging.INFO, name="worker")
