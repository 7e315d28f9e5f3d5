"""Health of the parts a deployment depends on: Redis, workers, key providers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pipeline.errors import OURS
from pipeline.queue import workers_alive
from pipeline.runtime import Runtime
from pipeline.store import schema
from pipeline.store.connection import redis_errors

__all__ = ["Health", "check_health", "queue_depth"]


@dataclass(frozen=True)
class Health:
    redis: str
    workers: int
    key_providers: str
    #: Redis and key providers answer (workers may be scaled to zero and still be healthy)
    ok: bool
    checked: float = field(default_factory=time.time)


def check_health(rt: Runtime, worker_timeout: float = 1.0) -> Health:
    try:
        rt.store.redis.ping()
        redis_state = "ok"
    except Exception as exc:
        redis_state = f"unreachable ({type(exc).__name__})"
    try:
        rt.keys.provider.health()
        providers = "ok"
    except OURS as exc:
        providers = str(exc) or type(exc).__name__
    try:
        workers = workers_alive(worker_timeout) if redis_state == "ok" else 0
    except Exception:
        workers = 0
    return Health(redis_state, workers, providers, redis_state == "ok" and providers == "ok")


@redis_errors
def queue_depth(rt: Runtime) -> tuple[int, int]:
    """(sealed segments waiting for a worker, Celery messages in the queue)."""
    pipe = rt.store.redis.pipeline(transaction=False)
    pipe.zcard(schema.PENDING)
    pipe.llen(schema.CELERY_QUEUE)
    pending, messages = pipe.execute()
    return int(pending), int(messages)
