"""A whole sealscribe on loopback, as real processes: a private ``redis-server``,
``sealscribe serve`` (the API, WHIP ingest and capture) and ``sealscribe worker``.

The privacy suite runs against it (``tests/privacy``); the fault tests (``tests/faults``)
also kill and restart its processes: Redis (with an append-only file, so a restart keeps
what was stored), the API on the same port, and the worker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from pipeline import queue, services
from pipeline.bot.ice import configure_ice
from pipeline.config import Settings, get_settings
from pipeline.net import free_port
from pipeline.queue import use_broker
from pipeline.runtime import Runtime
from pipeline.store import schema
from tests.integration.workers import WorkerProcess

__all__ = ["LocalStack", "T", "wait_until"]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(poll)


@dataclass(frozen=True)
class T:
    """A tenant as the API knows it: its id and its bearer token."""

    id: str
    token: str


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class LocalStack:
    """redis-server, ``sealscribe serve`` and ``sealscribe worker`` on loopback, each with
    its own temp directory, sharing one ``SEALSCRIBE_HOME`` (the local keyring).

    ``durable_redis`` runs Redis with an append-only file synced on every write (what a
    deployment that must survive a Redis restart runs); ``env`` is added to every process's
    environment."""

    def __init__(
        self,
        root: Path,
        redis_url: str | None = None,
        durable_redis: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.home = root / "home"
        self.logs = root / "logs"
        self.api_tmp = root / "api-tmp"
        self.worker_tmp = root / "worker-tmp"
        for d in (self.home, self.logs, self.api_tmp, self.worker_tmp):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._redis: subprocess.Popen[bytes] | None = None
        self._api: subprocess.Popen[bytes] | None = None
        self.worker: WorkerProcess | None = None
        self.durable_redis = durable_redis
        self.redis_port = free_port()
        self.redis_url = redis_url or self.start_redis()
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "SEALSCRIBE_HOME": str(self.home),
            "SEALSCRIBE_REDIS_URL": self.redis_url,
            "SEALSCRIBE_KEY_PROVIDER": "local",
            "SEALSCRIBE_ICE_HOSTS": "127.0.0.1",
            **(env or {}),
        }
        r = redis.Redis.from_url(self.redis_url)
        r.flushdb()
        r.close()
        self.rt = Runtime.from_settings(
            Settings.from_env({**os.environ, **self.env}), actor="test-stack"
        )

    @property
    def scan_dirs(self) -> list[Path]:
        """Everything the processes could write to: home (keyring, logs), the log files
        the suite captures, and each process's temp directory."""
        return [self.home, self.logs, self.api_tmp, self.worker_tmp]

    def start_redis(self) -> str:
        """Start (or, after :meth:`stop_redis`, restart) the private redis-server."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip(
                "redis-server (Debian package redis-server) is needed to run this "
                "suite locally; or set SEALSCRIBE_PRIVACY_REDIS_URL to a Redis "
                "database it may flush"
            )
        data = self.root / "redis"
        data.mkdir(exist_ok=True)
        durability = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.durable_redis
            else ["--appendonly", "no"]
        )
        self._redis = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *durability,
                "--dir",
                str(data),
            ],
            stdout=(self.logs / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"redis://127.0.0.1:{self.redis_port}/0"

        def answers() -> bool:
            try:
                client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
                try:
                    return bool(client.ping())
                finally:
                    client.close()
            except (redis.ConnectionError, redis.BusyLoadingError, OSError):
                return False

        wait_until(answers, 20, "the private redis-server")
        return url

    def stop_redis(self, sig: int = signal.SIGKILL) -> None:
        _stop(self._redis, sig)

    @contextlib.contextmanager
    def running(self) -> Iterator[LocalStack]:
        """Started for the block, with this process's settings (and WebRTC host addresses)
        pointing at it; stopped after it, whatever happened."""
        with pytest.MonkeyPatch.context() as mp:
            for name, value in self.env.items():
                mp.setenv(name, value)
            get_settings.cache_clear()
            configure_ice("127.0.0.1")
            try:
                self.start()
                yield self
            finally:
                self.stop()
                configure_ice("")
        get_settings.cache_clear()

    def start(self) -> None:
        self.start_api()
        self.worker = WorkerProcess(
            self.home, self.logs / "worker.log", (), TMPDIR=str(self.worker_tmp), **self.env
        )
        use_broker(self.redis_url)  # this process's Celery client: pause and resume workers

    def start_api(self) -> None:
        """Start (or restart) ``sealscribe serve`` on the stack's port; wait until it
        answers."""
        env = {**os.environ, **self.env, "TMPDIR": str(self.api_tmp), "PYTHONUNBUFFERED": "1"}
        self._api = api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=(self.logs / "api.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def api_up() -> bool:
            if api.poll() is not None:
                raise RuntimeError(f"sealscribe serve exited; see {self.logs / 'api.log'}")
            try:
                return httpx.get(f"{self.api_url}/openapi.json", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(api_up, 60, "sealscribe serve")

    def stop_api(self, sig: int = signal.SIGTERM) -> None:
        _stop(self._api, sig)

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.stop_api()
        self.stop_redis(signal.SIGTERM)

    def tenant(self, name: str) -> T:
        tenant, token = services.create_tenant(self.rt, name)
        return T(tenant.id, token)

    @contextlib.contextmanager
    def workers_paused(self) -> Iterator[None]:
        """Workers take nothing from the queue inside the block: what is sealed waits."""
        queue.client().control.cancel_consumer(schema.CELERY_QUEUE, reply=True, timeout=5, limit=1)
        try:
            yield
        finally:
            queue.client().control.add_consumer(schema.CELERY_QUEUE, reply=True, timeout=5, limit=1)
