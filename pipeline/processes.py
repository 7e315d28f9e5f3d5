"""Local processes that the demo, the benchmarks and the test harness start and stop: a
private ``redis-server`` and a ``sealscribe worker`` (operators run their own), and
:func:`wait_until`, the one way to wait for one of them to be ready."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import redis

from pipeline.config import Settings
from pipeline.errors import Conflict, StoreUnavailable
from pipeline.net import free_port
from pipeline.queue import workers_alive

__all__ = ["private_redis", "stop", "wait_until", "worker_process"]

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: Callable[[], bool] | None = None,
) -> T:
    """Call ``probe`` until it returns something truthy, and return that. Raises
    :class:`TimeoutError` naming ``what`` after ``timeout`` seconds, or at once when
    ``alive`` (the process being waited for) says it has died."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if alive is not None and not alive():
            raise TimeoutError(f"{what}: the process exited")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def stop(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 30.0
) -> None:
    """Stop a process started in its own session, with everything in its group: ``sig``,
    at most ``timeout`` seconds for it to exit, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _running(proc: subprocess.Popen[bytes]) -> Callable[[], bool]:
    return lambda: proc.poll() is None


def _pings(url: str) -> bool:
    """Whether Redis answers at ``url`` (a plain URL is given half a second to connect)."""
    from pipeline.store.connection import CLUSTER_SCHEME, SENTINEL_SCHEME, connect

    try:  # a cluster client asks its nodes for the slots as it is made
        if url.startswith((SENTINEL_SCHEME, CLUSTER_SCHEME)):
            client = connect(url)
        else:
            client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    except (redis.RedisError, redis.exceptions.RedisClusterException, OSError):
        return False
    try:
        return bool(client.ping())
    except (redis.RedisError, redis.exceptions.RedisClusterException, OSError):
        return False
    finally:
        client.close()


@contextlib.contextmanager
def private_redis(url: str) -> Iterator[str | None]:
    """Yields None if Redis answers at ``url``; otherwise starts a private ``redis-server``
    (no persistence, loopback only, in a temporary directory) and yields its URL."""
    if _pings(url):
        yield None
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise StoreUnavailable(
            f"Redis is not reachable at {url} and redis-server is not installed: install it "
            "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set "
            "SEALSCRIBE_REDIS_URL to a Redis you run"
        )
    workdir = tempfile.mkdtemp(prefix="sealscribe-redis-")
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - a fixed command line
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    private = f"redis://127.0.0.1:{port}/0"
    try:
        try:
            wait_until(lambda: _pings(private), 10, "redis-server", alive=_running(proc))
        except TimeoutError:
            raise StoreUnavailable("the private redis-server did not start") from None
        yield private
    finally:
        stop(proc, timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def worker_process(
    settings: Settings,
    log_path: Path,
    concurrency: int = 1,
    reuse: bool = True,
    extra_env: dict[str, str] | None = None,
) -> Iterator[bool]:
    """Yields True if it started a worker, False if one was already answering (and
    ``reuse``). A started worker is stopped (warm shutdown) when the block ends."""
    if reuse and workers_alive():
        yield False
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SEALSCRIBE_REDIS_URL": settings.redis_url,
        "SEALSCRIBE_BROKER_URL": settings.broker_url,
        "SEALSCRIBE_HOME": str(settings.home),
        **(extra_env or {}),
    }
    with log_path.open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "worker",
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            try:
                wait_until(
                    lambda: workers_alive(timeout=0.5), 120, "worker", 0, alive=_running(proc)
                )
            except TimeoutError:
                raise Conflict(f"the worker did not start; see {log_path}") from None
            yield True
        finally:
            stop(proc, timeout=60)  # a warm shutdown: the worker finishes the batch in hand
