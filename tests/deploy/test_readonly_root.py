"""The image's promise, checked without a Docker engine: the API, the bot service and a worker
(with beat and metrics) run as uid 10001 on a read-only root filesystem and write only
``SEALSCRIBE_HOME`` and ``TMPDIR``, as deploy/Dockerfile and the Kubernetes manifests set
them up.

bubblewrap (Debian's ``bubblewrap``, installed by ``scripts/setup --test``) mounts ``/``
read-only, a fresh tmpfs on ``/tmp``, one directory read-write as the home, and maps the test
to uid 10001 in a user namespace (the image's ``USER``). The processes share the host's
network, so they reach the real Redis on loopback (database 6).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.wer import normalise
from pipeline.net import free_port
from tests.conftest import shared_data

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("SEALSCRIBE_TEST_READONLY_REDIS_URL", "redis://127.0.0.1:6379/6")
BWRAP = shutil.which("bwrap")
HOME = "/mnt"  # an empty directory that exists in the read-only root, as in most images


def sandboxed(home: Path, *args: str) -> list[str]:
    assert BWRAP is not None
    return [
        BWRAP,
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--bind",
        str(home),
        HOME,
        "--unshare-user",
        "--uid",
        "10001",
        "--gid",
        "10001",
        "--die-with-parent",
        sys.executable,
        "-m",
        "pipeline.cli",
        *args,
    ]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    if BWRAP is None:
        pytest.skip(
            "bubblewrap (Debian package) is needed for the read-only root check; "
            "scripts/setup --test installs it"
        )
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": HOME,
        "TMPDIR": "/tmp",
        "SEALSCRIBE_HOME": HOME,
        "SEALSCRIBE_REDIS_URL": REDIS_URL,
        "SEALSCRIBE_KEY_PROVIDER": "local",
        "SEALSCRIBE_CPU_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
    }
    r = redis.Redis.from_url(REDIS_URL)
    r.flushdb()
    probe = subprocess.run(
        [BWRAP, "--ro-bind", "/", "/", "--unshare-user", "--uid", "10001", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.fail(f"bubblewrap cannot make a user namespace here: {probe.stderr.strip()}")
    try:
        yield home, env
    finally:
        r.flushdb()
        r.close()


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return get(url)[1]
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{url} never answered:\n{log.read_text()}") from None
            time.sleep(0.3)


def test_api_bots_and_worker_write_only_home_and_tmp_as_uid_10001(
    sandbox: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    home, env = sandbox
    api_port, bots_port, worker_port = free_port(), free_port(), free_port()
    commands = {
        "worker": (
            "worker",
            "-c",
            "1",
            "--beat",
            "--loglevel",
            "info",
            "--metrics-port",
            str(worker_port),
        ),
        "api": ("serve", "--port", str(api_port)),
        "bots": ("bots", "--metrics-port", str(bots_port)),
    }
    logs = {name: tmp_path / f"{name}.log" for name in commands}
    procs = {
        name: subprocess.Popen(
            sandboxed(home, *args),
            env=env,
            stdout=logs[name].open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for name, args in commands.items()
    }
    try:
        assert b"sealscribe_segments_transcribed_total" in wait_for(
            f"http://127.0.0.1:{worker_port}/metrics", procs["worker"], logs["worker"]
        )
        assert b"sealscribe_capture_frames_total" in wait_for(
            f"http://127.0.0.1:{bots_port}/metrics", procs["bots"], logs["bots"]
        )
        health = json.loads(
            wait_for(f"http://127.0.0.1:{api_port}/healthz", procs["api"], logs["api"])
        )
        assert health["ok"] and health["redis"] == "ok"
        deadline = time.monotonic() + 60
        while b"ready." not in logs["worker"].read_bytes():
            assert time.monotonic() < deadline, logs["worker"].read_text()
            time.sleep(0.2)

        def cli(*args: str) -> str:
            done = subprocess.run(
                sandboxed(home, *args), env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        tenant = json.loads(cli("tenant", "create", "Acme", "--json"))["tenant"]["id"]
        said = normalise(cli("transcribe", str(shared_data("jfk", "jfk.flac")), "--tenant", tenant))
        assert " ".join(normalise("ask not what your country can do for you")) in " ".join(said)
        status, _ = get(f"http://127.0.0.1:{worker_port}/metrics")
        assert status == 200
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for name, log in logs.items():  # nothing tried to write anywhere else
        text = log.read_text()
        assert "Read-only file system" not in text and "Errno 30" not in text, (name, text)
    # What they did write is in the home: the keyring, logs and the beat schedule.
    written = {p.relative_to(home).parts[0] for p in home.rglob("*")}
    assert {"keys", "logs"} <= written
    assert any(p.name.startswith("celerybeat-schedule") for p in home.iterdir())
