"""The deployment the quota and hardening tests run against: real processes on loopback.

A private ``redis-server``; one or more ``sealscribe serve``; optionally ``sealscribe bots``
and a ``sealscribe worker`` (with the beat); optionally a real OpenBao behind a proxy that a
test can cut (a KMS outage) as the tenants' key provider. Every process gets the same
settings (and any fault this test run injects), a private home and temp directory.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pipeline import faults, services
from pipeline.config import Settings
from pipeline.net import free_port
from pipeline.queue import use_broker
from pipeline.runtime import Runtime
from tests.harness.bao import BaoServer, TcpProxy
from tests.harness.processes import ApiProcess, BotsProcess, WorkerProcess, sealscribe
from tests.harness.redis import RedisServer
from tests.harness.stack import T

__all__ = ["TenantStack", "tenant_stack"]


@dataclass
class TenantStack:
    root: Path
    redis: RedisServer
    env: dict[str, str]
    rt: Runtime
    apis: list[ApiProcess]
    bots: BotsProcess | None = None
    worker: WorkerProcess | None = None
    bao: BaoServer | None = None
    #: the KMS as the processes reach it: cut it with ``stop()``, restore with ``start()``
    kms: TcpProxy | None = None
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def api(self) -> ApiProcess:
        return self.apis[0]

    def tenant(self, name: str) -> T:
        tenant, token = services.create_tenant(self.rt, name)
        return T(tenant.id, token)

    def http(self, tenant: T | None = None, api: int = 0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {tenant.token}"} if tenant else {}
        return httpx.Client(base_url=self.apis[api].url, headers=headers, timeout=30)

    def cli(self, *args: str, timeout: float = 60) -> tuple[int, str]:
        """Run ``sealscribe ARGS`` with the stack's settings: (exit code, stdout+stderr)."""
        done = subprocess.run(
            sealscribe(*args),
            env={**self.env, "TMPDIR": str(self.root)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return done.returncode, done.stdout + done.stderr


def _env(home: Path, redis_url: str, settings: dict[str, str]) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SEALSCRIBE_")},
        **{k: os.environ[k] for k in (faults.FAULTS_VAR, faults.ALLOW_VAR) if k in os.environ},
        "SEALSCRIBE_HOME": str(home),
        "SEALSCRIBE_REDIS_URL": redis_url,
        "SEALSCRIBE_KEY_PROVIDER": "local",
        "SEALSCRIBE_ICE_HOSTS": "127.0.0.1",
        "SEALSCRIBE_BOT_ALLOW": "127.0.0.1",  # the stand-in meeting servers are on loopback
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
        **settings,
    }


@contextlib.contextmanager
def tenant_stack(
    root: Path,
    *,
    apis: int = 1,
    bots: bool = False,
    worker: bool = False,
    kms: bool = False,
    bots_metrics: bool = False,
    worker_metrics: bool = False,
    **settings: str,
) -> Iterator[TenantStack]:
    """Start the stack (each part asked for), yield it, stop everything afterwards."""
    with contextlib.ExitStack() as cleanup:
        redis = RedisServer(root / "redis")
        redis.start(20)
        cleanup.callback(redis.stop)
        home = root / "home"
        home.mkdir(mode=0o700)
        extra: dict[str, str] = {}
        bao = proxy = None
        if kms:
            (root / "bao").mkdir()
            bao = BaoServer(root / "bao")
            cleanup.callback(bao.stop)
            proxy = TcpProxy(bao.port)
            cleanup.callback(proxy.stop)
            extra = {
                "SEALSCRIBE_KEY_PROVIDER": "transit",
                "SEALSCRIBE_TRANSIT_ADDR": proxy.url,
                "SEALSCRIBE_TRANSIT_TOKEN": bao.token,
                "SEALSCRIBE_TRANSIT_TIMEOUT": "2",
            }
        env = _env(home, redis.url, {**extra, **settings})
        ports: dict[str, int] = {}
        started: list[ApiProcess] = []
        for i in range(apis):
            api = ApiProcess(free_port(), {**env, "TMPDIR": str(root)}, root / f"api{i}.log")
            cleanup.callback(api.stop)
            started.append(api)
            api.start()
        bots_process = None
        if bots:
            args: list[str] = []
            if bots_metrics:
                ports["bots"] = free_port()
                args = ["--metrics-port", str(ports["bots"])]
            bots_process = BotsProcess({**env, "TMPDIR": str(root)}, root / "bots.log")
            bots_process.argv += args
            cleanup.callback(bots_process.stop)
            bots_process.start()
        worker_process = None
        if worker:
            wargs = ["--beat"]
            if worker_metrics:
                ports["worker"] = free_port()
                wargs += ["--metrics-port", str(ports["worker"])]
            blanks = {k: "" for k in os.environ if k.startswith("SEALSCRIBE_") and k not in env}
            worker_extra: dict[str, Any] = {
                **blanks,
                **{k: v for k, v in env.items() if k.startswith("SEALSCRIBE_")},
                "TMPDIR": str(root),
            }
            worker_process = WorkerProcess(home, root / "worker.log", tuple(wargs), **worker_extra)
            cleanup.callback(worker_process.stop)
        rt = Runtime.from_settings(Settings.from_env(env), actor="test")
        cleanup.callback(rt.store.redis.close)
        cleanup.callback(use_broker, use_broker(redis.url))
        yield TenantStack(
            root, redis, env, rt, started, bots_process, worker_process, bao, proxy, ports
        )
