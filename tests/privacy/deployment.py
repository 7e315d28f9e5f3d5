"""What the privacy suite runs against: a sealscribe it starts on loopback (a private
``redis-server``, ``sealscribe serve`` and ``sealscribe worker`` as real processes), or a
deployment someone already runs (its API URL, tenant tokens and Redis URL).

Either way the tests speak to the API over HTTP and WebRTC, and read Redis directly: what an
operator (or an attacker with a Redis backup) could see. Only the local stack can also pause
its workers, inject faults and read its processes' homes, logs and temp directories.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from pipeline import services
from pipeline.config import Settings
from pipeline.net import free_port
from pipeline.runtime import Runtime
from pipeline.store import schema
from tests.integration.workers import WorkerProcess
from workers.app import app as celery_app
from workers.client import use_broker

__all__ = ["TOKEN_OPTIONS", "Api", "Deployment", "LocalStack", "T", "free_port", "wait_until"]

#: tenant role -> the option that gives its token when running against a deployment
TOKEN_OPTIONS = {"a": "--deployment-token", "b": "--deployment-other-token",
                 "revoke": "--deployment-revoke-token"}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               poll: float = 0.1) -> None:
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


class Api:
    """The HTTP API, as one tenant (or nobody) calls it."""

    def __init__(self, base: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base = base
        self.token = token
        self.http = httpx.Client(base_url=base, headers=headers, timeout=60)

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self(method, path, **kwargs)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text[:300]}"
        return r.json() if r.headers.get("content-type", "").startswith("application/json") \
            else r.text

    def meeting(self, transcription: bool = True) -> str:
        meeting_id: str = self.ok("POST", "/v1/meetings",
                                  json={"transcription": transcription})["id"]
        return meeting_id

    def switch(self, meeting_id: str, on: bool) -> None:
        self.ok("PUT", f"/v1/meetings/{meeting_id}/transcription", json={"enabled": on})

    def consent(self, meeting_id: str, participant: str, transcribe: bool) -> None:
        self.ok("PUT", f"/v1/meetings/{meeting_id}/participants/{participant}/consent",
                json={"transcribe": transcribe})

    def transcript(self, meeting_id: str) -> str:
        """The transcript as text, opened by the API with purpose deliver."""
        text: str = self.ok("GET", f"/v1/meetings/{meeting_id}/transcript")
        return text

    def audit(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        while True:
            page = self.ok("GET", "/v1/audit", params={"offset": len(entries), "limit": 1000})
            entries += page["entries"]
            if len(page["entries"]) < 1000:
                return entries

    def whip(self, meeting_id: str) -> str:
        return f"{self.base}/v1/meetings/{meeting_id}/whip"

    def captions(self, meeting_id: str) -> str:
        ws = "ws" + self.base[len("http"):]
        return f"{ws}/v1/meetings/{meeting_id}/captions"

    def close(self) -> None:
        self.http.close()


class LocalStack:
    """redis-server, ``sealscribe serve`` and ``sealscribe worker`` on loopback, each with
    its own temp directory, sharing one ``SEALSCRIBE_HOME`` (the local keyring)."""

    def __init__(self, root: Path, redis_url: str | None = None) -> None:
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
        self.redis_url = redis_url or self._start_redis()
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.env = {"SEALSCRIBE_HOME": str(self.home), "SEALSCRIBE_REDIS_URL": self.redis_url,
                    "SEALSCRIBE_KEY_PROVIDER": "local", "SEALSCRIBE_ICE_HOSTS": "127.0.0.1"}
        r = redis.Redis.from_url(self.redis_url)
        r.flushdb()
        r.close()
        self.rt = Runtime.from_settings(Settings.from_env({**os.environ, **self.env}),
                                        actor="privacy-suite")

    @property
    def scan_dirs(self) -> list[Path]:
        """Everything the processes could write to: home (keyring, logs), the log files
        the suite captures, and each process's temp directory."""
        return [self.home, self.logs, self.api_tmp, self.worker_tmp]

    def _start_redis(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server (Debian package redis-server) is needed to run the "
                        "privacy suite locally; or set SEALSCRIBE_PRIVACY_REDIS_URL to a "
                        "Redis database it may flush")
        port = free_port()
        data = self.root / "redis"
        data.mkdir(exist_ok=True)
        self._redis = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(data)],
            stdout=(self.logs / "redis.log").open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        url = f"redis://127.0.0.1:{port}/0"

        def answers() -> bool:
            try:
                return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
            except (redis.ConnectionError, OSError):
                return False

        wait_until(answers, 10, "the private redis-server")
        return url

    def start(self) -> None:
        env = {**os.environ, **self.env, "TMPDIR": str(self.api_tmp), "PYTHONUNBUFFERED": "1"}
        self._api = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "serve", "--host", "127.0.0.1",
             "--port", str(self.port)],
            env=env, stdout=(self.logs / "api.log").open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        self.worker = WorkerProcess(
            self.home, self.logs / "worker.log", TMPDIR=str(self.worker_tmp),
            SEALSCRIBE_REDIS_URL=self.redis_url, SEALSCRIBE_ICE_HOSTS="127.0.0.1")

        def api_up() -> bool:
            assert self._api is not None
            if self._api.poll() is not None:
                raise RuntimeError(f"sealscribe serve exited; see {self.logs / 'api.log'}")
            try:
                return httpx.get(f"{self.api_url}/openapi.json", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(api_up, 60, "sealscribe serve")
        use_broker(self.redis_url)  # this process's Celery client: pause and resume workers

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        for proc in (self._api, self._redis):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()

    def tenant(self, name: str) -> T:
        tenant, token = services.create_tenant(self.rt, name)
        return T(tenant.id, token)

    @contextlib.contextmanager
    def workers_paused(self) -> Iterator[None]:
        """Workers take nothing from the queue inside the block: what is sealed waits."""
        celery_app.control.cancel_consumer(schema.CELERY_QUEUE, reply=True, timeout=5, limit=1)
        try:
            yield
        finally:
            celery_app.control.add_consumer(schema.CELERY_QUEUE, reply=True, timeout=5, limit=1)


@dataclass
class Deployment:
    api_url: str
    redis_url: str
    local: LocalStack | None
    #: role ("a", "b", "revoke") -> token, for a deployment the suite did not start
    tokens: dict[str, str] = field(default_factory=dict)
    scan_dirs: list[Path] = field(default_factory=list)
    _apis: list[Api] = field(default_factory=list)
    _redis: redis.Redis | None = None

    def tenant(self, role: str) -> T:
        """A tenant for ``role``: a new one on the local stack, or the one whose token was
        given for that role (the test is skipped if none was)."""
        if self.local is not None:
            return self.local.tenant(f"privacy-{role}")
        token = self.tokens.get(role)
        if token is None:
            pytest.skip(f"needs {TOKEN_OPTIONS[role]} (the token of a tenant the suite may "
                        f"{'revoke' if role == 'revoke' else 'use'})")
        me = self.api(token).ok("GET", "/v1/tenant")
        return T(me["id"], token)

    def api(self, who: T | str | None) -> Api:
        token = who.token if isinstance(who, T) else who
        api = Api(self.api_url, token)
        self._apis.append(api)
        return api

    def need_local(self, why: str) -> LocalStack:
        if self.local is None:
            pytest.skip(f"needs the suite's own processes ({why}); not possible against "
                        "--deployment-url")
        return self.local

    def redis(self) -> redis.Redis:
        """The deployment's Redis, as an operator (or a backup) sees it."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url, socket_connect_timeout=5)
        return self._redis

    def close(self) -> None:
        for api in self._apis:
            api.close()
        self._apis.clear()
        if self._redis is not None:
            self._redis.close()


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("127.0.0.1", "::1", "localhost")
