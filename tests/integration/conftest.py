"""Fixtures for tests that need a real worker: a module-scoped ``env`` (a private home and
temp directory, the worker database, the test broker) and a ``worker`` subprocess using it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import egress
from pipeline.capture.ice import configure_ice
from pipeline.config import get_settings
from pipeline.egress import EgressPolicy
from pipeline.queue import use_broker
from pipeline.store.connection import connect
from tests.harness.processes import (
    WORKER_REDIS_URL,
    WorkerProcess,
    broker_for,
    purge_broker,
    worker_env,
)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("worker-home")
    private_tmp = tmp_path_factory.mktemp("worker-tmp")  # the worker's temp directory
    values = worker_env(home, TMPDIR=str(private_tmp))
    r = connect(WORKER_REDIS_URL)  # (a cluster's client where the worker store is one)
    r.flushdb()
    purge_broker(broker_for(WORKER_REDIS_URL))
    with pytest.MonkeyPatch.context() as mp:
        for k in (
            "SEALSCRIBE_HOME",
            "SEALSCRIBE_REDIS_URL",
            "SEALSCRIBE_BROKER_URL",
            "SEALSCRIBE_KEY_PROVIDER",
        ):
            mp.setenv(k, values[k])
        get_settings.cache_clear()
        use_broker(broker_for(WORKER_REDIS_URL))
        yield values
    get_settings.cache_clear()
    r.flushdb()


@pytest.fixture(scope="module")
def worker(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("logs") / "worker.log"
    w = WorkerProcess(Path(env["SEALSCRIBE_HOME"]), log)
    yield w
    w.stop()


@pytest.fixture
def loopback_ice() -> Iterator[None]:
    """WebRTC on loopback only: aioice offers 127.0.0.1 and nothing else, and the egress
    policy of this process (the API a test serves in it) lets exactly 127.0.0.1 through, as
    ``SEALSCRIBE_BOT_ALLOW=127.0.0.1`` would."""
    configure_ice("127.0.0.1")
    egress.configure(EgressPolicy.parse("127.0.0.1"))
    yield
    egress.configure(None)
    configure_ice("")
