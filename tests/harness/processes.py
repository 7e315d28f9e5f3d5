"""Service processes the tests start: ``sealscribe serve``, ``sealscribe worker`` and
``sealscribe bots`` (or any command line, such as the same wrapped in bubblewrap), each in its
own session with its output appended to a log file, and one way to stop them.

A process is started by :meth:`Service.start`, which waits (with :func:`wait_until`) until
its readiness probe answers: the API when it serves ``/openapi.json``, a worker when it
answers a Celery control request on its broker (:func:`worker_answers`), not when a line
appears in its log. :func:`stop` sends a signal to the whole process group, waits a bounded
time, then kills the group.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx
import redis
from celery import Celery
from kombu.exceptions import OperationalError

from pipeline.processes import stop, wait_until

__all__ = [
    "TEST_BROKER_URL",
    "WORKER_REDIS_URL",
    "ApiProcess",
    "BotsProcess",
    "Service",
    "WorkerProcess",
    "broker_for",
    "http_ok",
    "purge_broker",
    "sealscribe",
    "stop",
    "wait_until",
    "worker_answers",
    "worker_env",
    "worker_ready",
]

#: Worker tests get their own database: flushing one under a running worker would also
#: delete Celery's queue bindings.
WORKER_REDIS_URL = os.environ.get("SEALSCRIBE_TEST_WORKER_REDIS_URL", "redis://127.0.0.1:6379/14")

#: The broker of the worker, scale-out and fault suites: empty for their Redis (the default),
#: or a RabbitMQ URL (CI's second run: ``SEALSCRIBE_TEST_BROKER_URL=amqp://...``) shared by
#: every worker they start and purged when a suite starts on it.
TEST_BROKER_URL = os.environ.get("SEALSCRIBE_TEST_BROKER_URL", "").strip()


def broker_for(redis_url: str) -> str:
    """The broker a suite whose store is ``redis_url`` sends to."""
    return TEST_BROKER_URL or redis_url


def purge_broker(url: str) -> None:
    """Empty the task queues on ``url`` when it is the shared RabbitMQ, so that a suite
    starts with nothing an earlier one left (a Redis database is flushed instead)."""
    from kombu.connection import Connection

    from pipeline.queue import INTERIM_QUEUE, QUEUE, is_amqp

    if not is_amqp(url):
        return
    with Connection(url, connect_timeout=5) as conn:  # type: ignore[no-untyped-call]
        for name in (QUEUE, INTERIM_QUEUE):  # not declared yet: nothing to purge
            with contextlib.suppress(*conn.channel_errors), conn.channel() as channel:
                channel.queue_purge(name)


#: A readiness probe: called with the service (its process started) until it returns True.
Probe = Callable[["Service"], bool]


def sealscribe(*args: str) -> list[str]:
    """The command line of ``sealscribe ARGS`` run by this interpreter (its venv)."""
    return [sys.executable, "-m", "pipeline.cli", *args]


def http_ok(url: str) -> Probe:
    """Ready when ``GET url`` answers 200."""

    def probe(_: Service) -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def worker_answers(broker_url: str, session: int, timeout: float = 0.5) -> bool:
    """Whether a Celery worker of session ``session`` (the pid of the process started with
    ``start_new_session``, a wrapper such as bwrap included) answers a control request on
    ``broker_url``. A plain ping names a node, not a process (and a node name may be
    reused by a restart); the ``stats`` reply carries the worker's pid. A worker serves
    control requests only once it consumes its task queue (Celery starts the consumer's
    Control step after its Tasks step), so an answer means it takes work."""
    from pipeline.queue import broker_conf

    app = Celery("sealscribe-harness", set_as_current=False)
    app.conf.update(broker_conf(broker_url, 600))  # kombu's spelling of a Sentinel URL
    try:
        replies = app.control.broadcast("stats", reply=True, timeout=timeout) or []
    except (OSError, OperationalError, redis.ConnectionError):  # the broker does not answer
        return False
    finally:
        app.close()
    for reply in replies:
        for info in reply.values():
            with contextlib.suppress(KeyError, TypeError, ValueError, ProcessLookupError):
                if os.getsid(int(info["pid"])) == session:
                    return True
    return False


def worker_ready(broker_url: str) -> Probe:
    """Ready when a worker of the service's session answers on ``broker_url``."""

    def probe(service: Service) -> bool:
        return worker_answers(broker_url, service.proc.pid)

    return probe


class Service:
    """One service process in its own session, its stdout and stderr appended to ``log``.

    Args:
        name: what the process is, for messages.
        argv: its command line.
        env: its whole environment.
        log: the file its output is appended to.
        ready: the readiness probe :meth:`wait_ready` polls; None: ready once started.
        stop_timeout: seconds :meth:`stop` waits after the signal before killing.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        *,
        ready: Probe | None = None,
        stop_timeout: float = 30.0,
    ) -> None:
        self.name, self.argv, self.env, self.log = name, list(argv), dict(env), log
        self.probe = ready
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The process (the latest one, after a restart)."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._proc

    def launch(self) -> None:
        """Start the process without waiting for it to be ready."""
        if self.running():
            raise RuntimeError(f"{self.name} is already running")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the probe answers; fail with the log's tail if the process exits or
        does not get ready within ``timeout`` seconds."""
        probe = self.probe
        if probe is None:
            return
        try:
            wait_until(lambda: probe(self), timeout, self.name, 0.1, alive=self.running)
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}; the end of {self.log}:\n{self.tail()}") from None

    def start(self, timeout: float = 60.0) -> None:
        """Start (or restart) the process and wait until it is ready; stopped again if it
        does not get ready."""
        self.launch()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """``sig`` to the whole group (SIGTERM: a warm shutdown), then SIGKILL if it takes
        longer than ``stop_timeout``."""
        stop(self._proc, sig, self.stop_timeout)

    def kill(self) -> None:
        """SIGKILL to the whole group, as a crash or a lost host would."""
        self.stop(signal.SIGKILL)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def check_alive(self) -> None:
        """Fail with the log's tail if the process died."""
        if self._proc is not None and self._proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self._proc.returncode}:\n{self.tail()}")


def worker_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment with a worker's settings: ``home``, the worker database
    (:data:`WORKER_REDIS_URL`), the test broker (:data:`TEST_BROKER_URL`), the local
    keyring; ``extra`` last."""
    return {
        **os.environ,
        "SEALSCRIBE_HOME": str(home),
        "SEALSCRIBE_REDIS_URL": WORKER_REDIS_URL,
        "SEALSCRIBE_BROKER_URL": TEST_BROKER_URL,
        "SEALSCRIBE_KEY_PROVIDER": "local",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class WorkerProcess(Service):
    """A real ``sealscribe worker`` (one pool process, log level info) with
    :func:`worker_env` (``home``, ``extra``), started at once. Ready when it answers a
    Celery control request on its broker."""

    def __init__(self, home: Path, log: Path, args: tuple[str, ...] = (), **extra: str) -> None:
        env = worker_env(home, **extra)
        self.home = home
        self.redis_url = env["SEALSCRIBE_REDIS_URL"]
        self.broker_url = env.get("SEALSCRIBE_BROKER_URL") or self.redis_url
        # a node name of its own: on RabbitMQ two workers of one name cannot both hold
        # their control queue, and the tests run several on this host
        node = f"sealscribe-{secrets.token_hex(4)}@%h"
        super().__init__(
            "sealscribe worker",
            sealscribe("worker", "-c", "1", "--loglevel", "info", "-n", node, *args),
            env,
            log,
            ready=worker_ready(self.broker_url),
        )
        self.start()


class ApiProcess(Service):
    """``sealscribe serve`` on ``host:port``; ready when it serves its OpenAPI document."""

    def __init__(
        self, port: int, env: Mapping[str, str], log: Path, host: str = "127.0.0.1"
    ) -> None:
        self.url = f"http://{host}:{port}"
        super().__init__(
            "sealscribe serve",
            sealscribe("serve", "--host", host, "--port", str(port)),
            env,
            log,
            ready=http_ok(f"{self.url}/openapi.json"),
        )


class BotsProcess(Service):
    """``sealscribe bots``; on SIGTERM it hands its bots off and leaves the rooms, so it
    gets 20 s before SIGKILL."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        super().__init__("sealscribe bots", sealscribe("bots"), env, log, stop_timeout=20.0)
