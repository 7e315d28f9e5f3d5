"""A private ``redis-server`` for one test stack: loopback only, optionally with an
append-only file (synced on every write) so that a restart keeps what was stored."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest
import redis

from pipeline.net import free_port
from tests.harness.processes import Service

__all__ = ["RedisServer", "ask_each", "require_redis_server"]


def require_redis_server(hint: str = "") -> str:
    """The redis-server binary, or a skip that says why the test cannot run."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(f"redis-server (Debian package redis-server) is missing{hint}")
    return binary


def ask_each(ports: Iterable[int], check: Callable[[redis.Redis], bool]) -> bool:
    """Whether ``check`` holds for the server on each of ``ports`` on 127.0.0.1 (asked one
    at a time with short timeouts); False as soon as one does not, or does not answer."""
    for port in ports:
        client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=2)
        try:
            if not check(client):
                return False
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()
    return True


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError, OSError):
        return False  # not up yet, or still loading its append-only file
    finally:
        client.close()


class RedisServer(Service):
    """``redis-server`` on ``127.0.0.1:port`` (a free port by default; in a network
    namespace, start it inside the namespace), its data and ``redis.log`` in ``workdir``.
    :meth:`start` restarts it on the same port after :meth:`stop` (SIGTERM) or
    :meth:`kill` (a crash).

    Args:
        workdir: its working directory (the append-only file lives there).
        port: its port; None picks a free one on this process's loopback.
        durable: an append-only file synced on every write (what a deployment that must
            survive a Redis restart runs), else no persistence at all.
        log: where its output goes (default ``workdir/redis.log``).
        skip_hint: added to the skip's reason where redis-server is not installed.
        args: more redis-server options (``--replicaof HOST PORT``, say).
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        durable: bool = False,
        log: Path | None = None,
        skip_hint: str = "",
        args: Sequence[str] = (),
    ) -> None:
        binary = require_redis_server(skip_hint)
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if durable
            else ["--appendonly", "no"]
        )
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += [*persistence, "--dir", str(workdir), *args]
        super().__init__(
            "redis-server",
            argv,
            os.environ,
            log or workdir / "redis.log",
            ready=lambda _: _answers(self.url),
            stop_timeout=10.0,
        )
