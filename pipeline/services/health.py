"""Health of the parts a deployment depends on: Redis, workers, key providers.

What went wrong with a key provider is kept apart (``Health.key_providers_detail``) and
logged: ``/healthz`` shows it only to an admin token, since a KMS's error text can describe
the operator's infrastructure."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from pipeline.errors import OURS, StoreUnavailable
from pipeline.queue import QUEUE, waiting, workers_alive
from pipeline.runtime import Runtime
from pipeline.store import schema
from pipeline.store.connection import redis_errors

__all__ = ["Health", "check_health", "queue_depth"]

log = logging.getLogger(__name__)

#: what anyone may see of a key provider that fails
UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Health:
    redis: str
    workers: int
    #: "ok" or "unavailable"
    key_providers: str
    #: Redis and key providers answer (workers may be scaled to zero and still be healthy)
    ok: bool
    checked: float = field(default_factory=time.time)
    #: why the key providers are unavailable (the error's type and message), or "ok"
    key_providers_detail: str = "ok"


def check_health(rt: Runtime, worker_timeout: float = 1.0) -> Health:
    try:
        rt.store.redis.ping()
        redis_state = "ok"
    except Exception as exc:
        redis_state = f"unreachable ({type(exc).__name__})"
    try:
        rt.keys.provider.health()
        providers = detail = "ok"
    except OURS as exc:
        providers = UNAVAILABLE
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        log.warning("the key provider is unavailable: %s", detail)
    try:
        workers = workers_alive(worker_timeout) if redis_state == "ok" else 0
    except Exception:
        workers = 0
    ok = redis_state == "ok" and providers == "ok"
    return Health(redis_state, workers, providers, ok, key_providers_detail=detail)


@redis_errors
def queue_depth(rt: Runtime) -> tuple[int, int]:
    """(sealed segments waiting for a worker, Celery messages in the final queue of the
    broker, Redis or RabbitMQ)."""
    pending = int(rt.store.redis.zcard(schema.PENDING))
    try:
        return pending, waiting(QUEUE)
    except Exception as exc:  # socket, kombu or py-amqp errors alike (never their text)
        raise StoreUnavailable(f"the broker is unreachable: {type(exc).__name__}") from None
