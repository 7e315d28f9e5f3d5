"""The log directory's disk full: the worker goes on transcribing, says once (to stderr,
without content) that it is dropping log records, writes nothing anywhere else, and its log
resumes, with a count of what was dropped, once there is room again.

The log directory is a tmpfs of 64 KiB filled to the last byte (mounting needs root, which
the suite has for its network namespaces too). Fails with the ``logs-unguarded`` fault.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pipeline import services
from tests.faults.harness import PHRASES, heard, running, submit_spoken
from tests.harness.processes import wait_until
from tests.privacy.live import settled

NOTICE = b"dropping log records until it can"
RESUMED = b"records were dropped while it was not"


@contextlib.contextmanager
def full_disk(where: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs at ``where``, filled up; yields the file that fills it."""
    where.mkdir(parents=True, mode=0o700)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mount.stderr.strip()}")
    filler = where / "filler"
    try:
        with filler.open("wb", buffering=0) as f:
            try:
                while True:
                    f.write(bytes(4096))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        yield filler
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_log_disk_stops_neither_work_nor_privacy(tmp_path: Path) -> None:
    log_dir = tmp_path / "home" / "logs"
    with full_disk(log_dir) as filler, running(tmp_path) as stack:
        assert stack.worker is not None
        tenant = stack.tenant("faults")
        meeting = services.create_meeting(stack.rt, tenant.id, transcription=True)
        r = redis.Redis.from_url(stack.redis_url)
        names = list(PHRASES)
        submit_spoken(stack, meeting, [PHRASES[n] for n in names[:2]])
        settled(r, meeting.id, transcripts=2)
        assert stack.worker.proc.poll() is None, "the worker died"
        output = stack.worker.log.read_bytes()  # the worker's stdout and stderr
        assert b"--- Logging error ---" not in output
        assert NOTICE in output
        assert not (log_dir / "worker.log").exists() or (log_dir / "worker.log").stat().st_size == 0

        filler.unlink()  # room again: the log resumes, saying how much it lost
        submit_spoken(stack, meeting, [PHRASES[n] for n in names[2:]], first=2)
        settled(r, meeting.id, transcripts=len(names))
        wait_until(
            lambda: RESUMED in (log_dir / "worker.log").read_bytes(),
            30,
            "the worker's log resuming",
        )
        assert heard(stack, meeting) >= {"Flintwick", "Copperfield", "Pemberton"}
        for path in tmp_path.rglob("*"):  # no plaintext fell back anywhere
            if path.is_file() and not path.is_symlink():
                content = path.read_bytes().lower()
                assert not [n for n in names if n.lower().encode() in content], path
        assert output.count(NOTICE) <= (os.cpu_count() or 1) + 1  # once per process, not per record
        r.close()
