"""The RabbitMQ the broker tests use: the machine's own on 127.0.0.1:5672 (``scripts/rabbitmq``
starts it and makes the test vhost), a vhost of its own so that nothing else's queues mix in."""

from __future__ import annotations

import contextlib
import os

import pytest
from kombu.connection import Connection

__all__ = ["RABBITMQ_URL", "require_rabbitmq"]

RABBITMQ_URL = os.environ.get(
    "SEALSCRIBE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/sealscribe-test"
)


def require_rabbitmq(url: str = RABBITMQ_URL) -> str:
    """``url`` if RabbitMQ answers there (its vhost included), or a skip that says why."""
    conn = Connection(url, connect_timeout=3)  # type: ignore[no-untyped-call]
    try:
        conn.connect()  # type: ignore[no-untyped-call]
    except Exception as exc:  # refused, an unknown vhost, a bad login: all say "no"
        pytest.skip(
            f"RabbitMQ does not answer at {url.rpartition('@')[2]} "
            f"({type(exc).__name__}): start it with scripts/rabbitmq"
        )
    finally:
        with contextlib.suppress(Exception):
            conn.release()  # type: ignore[no-untyped-call]
    return url
