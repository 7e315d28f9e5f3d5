"""The image's promise, checked without a Docker engine: the API, the bot service and a worker
(with beat and metrics) run as uid 10001 on a read-only root filesystem and write only
``SEALSCRIBE_HOME`` and ``TMPDIR``, as deploy/Dockerfile and the Kubernetes manifests set
them up.

bubblewrap (Debian's ``bubblewrap``, installed by ``scripts/setup --test``) mounts ``/``
read-only, a fresh tmpfs on ``/tmp``, one directory read-write as the home, and maps the test
to uid 10001 in a user namespace (the image's ``USER``). A checkout or virtualenv that lives
under /tmp is bound back, read-only, over the fresh /tmp (the image has its code outside it
too). The processes share the host's network, so they reach the real Redis on loopback
(database 6).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import redis

from bench.wer import normalise
from pipeline.net import free_port
from tests.conftest import shared_data
from tests.harness.processes import Service, http_ok, sealscribe, worker_ready

REDIS_URL = os.environ.get("SEALSCRIBE_TEST_READONLY_REDIS_URL", "redis://127.0.0.1:6379/6")
BWRAP = shutil.which("bwrap")
HOME = "/mnt"  # an empty directory that exists in the read-only root, as in most images
CHECKOUT = Path(__file__).resolve().parents[2]


def under_tmp(paths: Iterable[Path]) -> list[Path]:
    """Those of ``paths`` (and of their real paths) that the sandbox's fresh /tmp would hide,
    outermost first, without one inside another."""
    found: list[Path] = []
    candidates = {q for p in paths for q in (p.absolute(), p.resolve())}
    for path in sorted(candidates, key=lambda p: len(p.parts)):
        if path.is_relative_to("/tmp") and not any(path.is_relative_to(f) for f in found):
            found.append(path)
    return found


def sandboxed(home: Path, *args: str, visible: Iterable[Path] = ()) -> list[str]:
    """``sealscribe ARGS`` in the sandbox. A checkout or virtualenv under /tmp (a clone
    there, CI's temp directories) is bound back read-only over the fresh /tmp, as are the
    ``visible`` files a command reads."""
    assert BWRAP is not None
    keep = under_tmp([CHECKOUT, Path(sys.prefix), Path(sys.executable).parent, *visible])
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
        *(arg for path in keep for arg in ("--ro-bind", str(path), str(path))),
        "--bind",
        str(home),
        HOME,
        "--unshare-user",
        "--uid",
        "10001",
        "--gid",
        "10001",
        "--die-with-parent",
        *sealscribe(*args),
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


def test_api_bots_and_worker_write_only_home_and_tmp_as_uid_10001(
    sandbox: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    home, env = sandbox
    api_port, bots_port, worker_port = free_port(), free_port(), free_port()
    worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"
    bots_metrics = f"http://127.0.0.1:{bots_port}/metrics"
    services = {
        "worker": Service(
            "worker",
            sandboxed(
                home,
                *("worker", "-c", "1", "--beat", "--loglevel", "info"),
                *("--metrics-port", str(worker_port)),
            ),
            env,
            tmp_path / "worker.log",
            ready=worker_ready(REDIS_URL),  # answers a Celery ping: consuming
        ),
        "api": Service(
            "api",
            sandboxed(home, "serve", "--port", str(api_port)),
            env,
            tmp_path / "api.log",
            ready=http_ok(f"http://127.0.0.1:{api_port}/healthz"),
        ),
        "bots": Service(
            "bots",
            sandboxed(home, "bots", "--metrics-port", str(bots_port)),
            env,
            tmp_path / "bots.log",
            ready=http_ok(bots_metrics),
        ),
    }
    try:
        for service in services.values():
            service.launch()  # all three start at once
        for service in services.values():
            service.wait_ready(90)
        assert b"sealscribe_segments_transcribed_total" in get(worker_metrics)[1]
        assert b"sealscribe_capture_frames_total" in get(bots_metrics)[1]
        health = json.loads(get(f"http://127.0.0.1:{api_port}/healthz")[1])
        assert health["ok"] and health["redis"] == "ok"
        jfk = shared_data("jfk", "jfk.flac")

        def cli(*args: str) -> str:
            done = subprocess.run(
                sandboxed(home, *args, visible=[jfk]),
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        tenant = json.loads(cli("tenant", "create", "Acme", "--json"))["tenant"]["id"]
        said = normalise(cli("transcribe", str(jfk), "--tenant", tenant))
        assert " ".join(normalise("ask not what your country can do for you")) in " ".join(said)
        status, _ = get(worker_metrics)
        assert status == 200
    finally:
        for service in services.values():
            service.stop()
    for name, service in services.items():  # nothing tried to write anywhere else
        text = service.log.read_text()
        assert "Read-only file system" not in text and "Errno 30" not in text, (name, text)
    # What they did write is in the home: the keyring, logs and the beat schedule.
    written = {p.relative_to(home).parts[0] for p in home.rglob("*")}
    assert {"keys", "logs"} <= written
    assert any(p.name.startswith("celerybeat-schedule") for p in home.iterdir())
