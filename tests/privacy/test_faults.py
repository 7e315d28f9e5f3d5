"""The fault injection that test_mutations.py relies on is for tests only: a process that
finds SEALSCRIBE_FAULTS without the explicit consent, or a fault it does not know, refuses
to start; with neither set, every hook is inert."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import faults
from pipeline.config import Settings
from pipeline.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]


def test_faults_need_the_explicit_consent() -> None:
    assert faults.parse({}) == frozenset()
    with pytest.raises(InvalidInput, match="refusing to start"):
        Settings.from_env({faults.FAULTS_VAR: "audit-skip"})
    with pytest.raises(InvalidInput, match="refusing to start"):
        faults.parse({faults.FAULTS_VAR: "audit-skip", faults.ALLOW_VAR: "yes"})
    with pytest.raises(InvalidInput, match="unknown faults: no-such-fault"):
        faults.parse({faults.FAULTS_VAR: "no-such-fault", faults.ALLOW_VAR: faults.CONSENT})
    both = {faults.FAULTS_VAR: "audit-skip, keep-audio", faults.ALLOW_VAR: faults.CONSENT}
    assert faults.parse(both) == {"audit-skip", "keep-audio"}
    assert not faults.active(), "this test process runs with faults injected"


@pytest.mark.parametrize("command", [["worker"], ["serve", "--port", "1"], ["tenant", "list"]])
def test_a_process_with_faults_but_no_consent_does_not_start(
    command: list[str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != faults.ALLOW_VAR}
    env |= {
        faults.FAULTS_VAR: "skip-seal-context",
        "SEALSCRIBE_HOME": str(tmp_path),
        "SEALSCRIBE_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert (
        "SEALSCRIBE_FAULTS is set, and it disables privacy mechanisms: refusing to start"
        in proc.stderr
    ), proc.stderr[-2000:]
