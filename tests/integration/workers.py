"""A real ``sealscribe worker`` subprocess for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.queue import use_broker

#: Worker tests get their own database: flushing one under a running worker would also
#: delete Celery's queue bindings.
WORKER_REDIS_URL = os.environ.get("SEALSCRIBE_TEST_WORKER_REDIS_URL", "redis://127.0.0.1:6379/14")


def worker_env(home: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SEALSCRIBE_HOME": str(home),
        "SEALSCRIBE_REDIS_URL": WORKER_REDIS_URL,
        "SEALSCRIBE_KEY_PROVIDER": "local",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class WorkerProcess:
    def __init__(self, home: Path, log: Path, args: tuple[str, ...] = (), **extra: str) -> None:
        self.home, self.log, self.extra, self.args = home, log, extra, args
        self.start()

    def start(self) -> None:
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "worker",
                "-c",
                "1",
                "--loglevel",
                "info",
                *self.args,
            ],
            env=worker_env(self.home, **self.extra),
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early; see {self.log}")
            if b"ready." in self.log.read_bytes()[self._log_start :]:
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout} s; see {self.log}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def wait_until(predicate, timeout: float = 60, poll: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(poll)


__all__ = ["WORKER_REDIS_URL", "WorkerProcess", "use_broker", "wait_until", "worker_env"]
