"""Start a ``sealscribe worker`` subprocess for the length of a ``with`` block (the demo and
the benchmarks use this; operators run ``sealscribe worker`` themselves)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from keys.errors import Conflict
from pipeline.config import Settings
from workers.client import workers_alive

__all__ = ["worker_process"]


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
            deadline = time.monotonic() + 120
            while not workers_alive(timeout=0.5):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise Conflict(f"the worker did not start; see {log_path}")
            yield True
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
