"""The Redis connection, and the boundary where redis-py errors become ours."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import redis

from pipeline.errors import StoreUnavailable

__all__ = ["Redis", "as_bytes", "as_str", "connect", "redis_errors"]

Redis = redis.Redis
P = ParamSpec("P")
R = TypeVar("R")


def connect(url: str) -> redis.Redis:
    """A client for ``url`` that returns bytes and fails fast when Redis is down."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30
    )


def redis_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Translate connection-level redis-py errors into :class:`StoreUnavailable`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"Redis is unreachable: {type(exc).__name__}") from None

    return wrapper


def as_bytes(value: object) -> bytes:
    """A reply from our clients (which never decode responses) as bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"unexpected Redis reply of type {type(value).__name__}")


def as_str(value: object) -> str:
    return as_bytes(value).decode()
