"""The one small module through which the bot, the CLI and the API enqueue work.

It sends tasks by name with ids only; it never imports faster-whisper or the tasks."""

from __future__ import annotations

from workers.app import TRANSCRIBE, app

__all__ = ["enqueue_transcribe", "use_broker", "workers_alive"]


def enqueue_transcribe(meeting_id: str, segment_id: str) -> None:
    app.send_task(TRANSCRIBE, args=[meeting_id, segment_id])


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
