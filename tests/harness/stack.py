"""Whole sealscribe deployments as real processes, for the suites that test it end to end.

:class:`LocalStack` runs on loopback: a private ``redis-server``, ``sealscribe serve`` (the
API, WHIP ingest and capture) and ``sealscribe worker``. The privacy suite runs against it
(``tests/privacy``); the fault tests (``tests/faults``) also kill and restart its processes:
Redis (with an append-only file, so a restart keeps what was stored), the API on the same
port, and the worker.

:func:`meeting_stack` runs in a network namespace (:mod:`tests.harness.netns`): a real Janus
(:mod:`tests.harness.janus`), a private ``redis-server`` on the namespace's own 127.0.0.1, a
real ``sealscribe worker`` and a real ``sealscribe bots``, all sharing a private
``SEALSCRIBE_HOME`` and temp directory. Nothing listens outside the namespace, and nothing
the test machine's shared Redis holds is touched. The test process talks to the same Redis
through :attr:`MeetingStack.rt`; it must do so from inside the namespace
(:meth:`NetNs.entered`), since 127.0.0.1 there is not the host's.

Everything is stopped (and the namespace deleted) afterwards, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline import faults, queue, services
from pipeline.capture.ice import configure_ice
from pipeline.config import Settings, get_settings
from pipeline.net import free_port
from pipeline.queue import use_broker
from pipeline.runtime import Runtime
from pipeline.store import schema
from pipeline.store.connection import connect
from tests.harness.janus import DEFAULT_ROOMS, JanusServer, Room, janus_server, require_janus
from tests.harness.netns import NetNs, network_namespace, require_netns
from tests.harness.processes import (
    TEST_BROKER_URL,
    ApiProcess,
    BotsProcess,
    Service,
    WorkerProcess,
    broker_for,
    purge_broker,
)
from tests.harness.redis import RedisServer, require_redis_server

__all__ = ["LocalStack", "MeetingStack", "T", "meeting_stack", "paused"]


@dataclass(frozen=True)
class T:
    """A tenant as the API knows it: its id and its bearer token."""

    id: str
    token: str


class LocalStack:
    """redis-server, ``sealscribe serve`` and ``sealscribe worker`` on loopback, each with
    its own temp directory, sharing one ``SEALSCRIBE_HOME`` (the local keyring).

    Args:
        root: an empty directory for homes, logs, temp directories and Redis's data.
        redis_url: a Redis database the stack may flush, instead of its own redis-server.
        durable_redis: run its redis-server with an append-only file synced on every write
            (what a deployment that must survive a Redis restart runs).
        env: added to every sealscribe process's environment.
    """

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
        #: the stack's own redis-server (None when it was given ``redis_url``)
        self.redis: RedisServer | None = None
        if redis_url is None:
            self.redis = RedisServer(
                root / "redis",
                durable=durable_redis,
                log=self.logs / "redis.log",
                skip_hint=(
                    ": it is needed to run this suite locally; or set "
                    "SEALSCRIBE_PRIVACY_REDIS_URL to a Redis database it may flush"
                ),
            )
            self.redis.start(20)
            redis_url = self.redis.url
        self.redis_url = redis_url
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.broker_url = broker_for(self.redis_url)
        self.env = {
            "SEALSCRIBE_HOME": str(self.home),
            "SEALSCRIBE_REDIS_URL": self.redis_url,
            "SEALSCRIBE_BROKER_URL": TEST_BROKER_URL,
            "SEALSCRIBE_KEY_PROVIDER": "local",
            "SEALSCRIBE_ICE_HOSTS": "127.0.0.1",
            # WHIP publishers on this machine offer loopback candidates: exactly that
            "SEALSCRIBE_BOT_ALLOW": "127.0.0.1",
            **(env or {}),
        }
        self.api = ApiProcess(
            self.port,
            {**os.environ, **self.env, "TMPDIR": str(self.api_tmp), "PYTHONUNBUFFERED": "1"},
            self.logs / "api.log",
        )
        self.worker: WorkerProcess | None = None
        try:
            r = connect(self.redis_url)  # a plain Redis or a Sentinel-watched primary
            r.flushdb()
            r.close()
            purge_broker(self.broker_url)
            self.rt = Runtime.from_settings(
                Settings.from_env({**os.environ, **self.env}), actor="test-stack"
            )
        except BaseException:
            self.stop()
            raise

    @property
    def scan_dirs(self) -> list[Path]:
        """Everything the processes could write to: home (keyring, logs), the log files
        the suite captures, and each process's temp directory."""
        return [self.home, self.logs, self.api_tmp, self.worker_tmp]

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
        """Start the API (wait until it answers), then the worker (wait until it answers a
        Celery ping); point this process's Celery client at the stack's broker."""
        self.api.start()
        self.worker = WorkerProcess(
            self.home, self.logs / "worker.log", (), TMPDIR=str(self.worker_tmp), **self.env
        )
        use_broker(self.broker_url)  # this process's Celery client: pause and resume workers

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.api.stop()
        if self.redis is not None:
            self.redis.stop()

    def tenant(self, name: str) -> T:
        tenant, token = services.create_tenant(self.rt, name)
        return T(tenant.id, token)

    def workers_paused(self) -> contextlib.AbstractContextManager[None]:
        return workers_paused()


@contextlib.contextmanager
def workers_paused() -> Iterator[None]:
    """Workers on the configured broker take nothing from the queues inside the block
    (finals and interims): what is sealed waits."""
    control = queue.client().control
    for name in (schema.CELERY_QUEUE, schema.CELERY_INTERIM_QUEUE):
        control.cancel_consumer(name, reply=True, timeout=5, limit=1)
    try:
        yield
    finally:
        for name in (schema.CELERY_QUEUE, schema.CELERY_INTERIM_QUEUE):
            control.add_consumer(name, reply=True, timeout=5, limit=1)


@contextlib.contextmanager
def paused(service: Service) -> Iterator[None]:
    """Stop a process (SIGSTOP to its whole group) for the body; it resumes afterwards. A
    paused worker leaves every sealed audio segment the bot stores meanwhile in Redis, to be
    inspected; it then works through them."""
    os.killpg(service.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(service.proc.pid, signal.SIGCONT)


#: the private Redis's port inside the namespace: any port is free there
NS_REDIS_PORT = 6390


@dataclass
class MeetingStack:
    ns: NetNs
    janus: JanusServer
    redis: RedisServer
    #: the environment of the subprocesses (and of CLI calls a test makes)
    env: dict[str, str]
    rt: Runtime
    worker: WorkerProcess
    bots: BotsProcess
    workdir: Path

    def url(self, room: int, pin: str | None = None) -> str:
        return self.janus.join_url(room, pin)

    def alive(self) -> None:
        """Fail with the log's tail if the worker or the bot service died."""
        self.worker.check_alive()
        self.bots.check_alive()


@contextlib.contextmanager
def meeting_stack(workdir: Path, rooms: Sequence[Room] = DEFAULT_ROOMS) -> Iterator[MeetingStack]:
    """Namespace, Janus (``rooms``), private Redis, worker and bot service, all started;
    stopped and deleted afterwards. Points this process's ICE at the namespace, its egress
    policy at the namespace's Janus (as ``SEALSCRIBE_BOT_ALLOW`` does for the bot service)
    and its Celery client at the private Redis meanwhile."""
    require_netns()
    require_janus()
    require_redis_server()
    home, tmp = workdir / "home", workdir / "tmp"
    for folder in (home, tmp):
        folder.mkdir(parents=True)
    # Stopped in reverse: the bot service (it leaves its rooms), the worker, Redis, then
    # Janus, then the namespace (which kills anything still in it).
    with (
        network_namespace() as ns,
        janus_server(ns, workdir / "janus", rooms=rooms) as janus,
        contextlib.ExitStack() as cleanup,
    ):
        redis_server = RedisServer(workdir, NS_REDIS_PORT)
        cleanup.callback(redis_server.stop)
        with ns.entered():
            redis_server.start(10)
        # Nothing of the caller's own sealscribe configuration (a Transit address, STUN
        # servers) leaks into the namespace's processes; injected faults do (tests/faults).
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SEALSCRIBE_") or k in (faults.FAULTS_VAR, faults.ALLOW_VAR)
        }
        env = {
            **inherited,
            "SEALSCRIBE_REDIS_URL": redis_server.url,
            "SEALSCRIBE_HOME": str(home),
            "SEALSCRIBE_KEY_PROVIDER": "local",
            "SEALSCRIBE_BROKER_URL": "",  # the namespace's Redis: nothing outside is reachable
            "SEALSCRIBE_ICE_HOSTS": ns.peer_addr,
            # the egress policy permits exactly the namespace's Janus (its HTTP API and its
            # ICE candidates): nothing else, not even the namespace's own 127.0.0.1
            "SEALSCRIBE_BOT_ALLOW": ns.host_addr,
            "TMPDIR": str(tmp),
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
        }
        # WorkerProcess starts from os.environ: blank what is not ours (empty means unset).
        extra = {
            k: env.get(k, "")
            for k in {*env, *os.environ}
            if k.startswith("SEALSCRIBE_") or k == "TMPDIR"
        }
        with ns.entered():
            worker = WorkerProcess(home, workdir / "worker.log", (), **extra)
            cleanup.callback(worker.stop)
            bots = BotsProcess(env, workdir / "bots.log")
            cleanup.callback(bots.stop)
            bots.start()
        rt = Runtime.from_settings(Settings.from_env(env), actor="test")
        cleanup.callback(rt.store.redis.close)
        # the test's own publishers talk to the namespace's Janus through JanusSession too
        cleanup.enter_context(ns.reached())
        cleanup.callback(use_broker, use_broker(redis_server.url))
        yield MeetingStack(ns, janus, redis_server, env, rt, worker, bots, workdir)
