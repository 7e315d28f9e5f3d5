"""The one small module through which the bot, the CLI and the API enqueue work.

It sends tasks by name with ids only; it never imports faster-whisper or the tasks."""

from __future__ import annotations

import contextlib

from workers.app import TRANSCRIBE, app

__all__ = ["enqueue_transcribe", "use_broker", "workers_alive"]


def enqueue_transcribe(meeting_id: str, segment_id: str) -> None:
    # ignore_result: no result is kept, and without it Celery subscribes this process to a
    # result channel per task sent (its Redis backend's on_task_call)
    app.send_task(TRANSCRIBE, args=[meeting_id, segment_id], ignore_result=True)


def workers_alive(timeout: float = 1.0) -> int:
    """How many workers answer a ping."""
    return len(app.control.ping(timeout=timeout) or [])


def use_broker(url: str) -> None:
    """Point this process's Celery client at ``url`` (the demo's private Redis, a test's
    database), dropping connections it pooled for another one."""
    app.conf.broker_url = url
    app.conf.result_backend = url
    # kombu keeps its pools per connection URL: forget ours, and the new URL gets its own.
    app._pool = None
    app.amqp._producer_pool = None
    with contextlib.suppress(AttributeError):
        del app._local.backend  # made again, for the new URL, when next used
