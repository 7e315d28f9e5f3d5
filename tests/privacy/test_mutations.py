"""Each privacy test can fail: run it against a build with the mechanism it guards switched
off (one fault from ``pipeline.faults``), and it must fail; without the fault it passes.

Every fault runs in its own pytest subprocess (its own redis-server, API and worker, with
``SEALSCRIBE_FAULTS`` set and the tests-only consent), two at a time. The baseline is this
session's own run of the same tests; tests that did not run here get one fault-free run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline import faults
from tests.privacy import conftest
from tests.privacy.deployment import Deployment
from tests.privacy.speech import require_espeak

pytestmark = pytest.mark.mutation

ROOT = Path(__file__).resolve().parents[2]
HERE = "tests/privacy"

#: fault -> the tests that must fail with it (the guarantee's tests, see PRIVACY.md)
MUTATIONS: dict[str, tuple[str, ...]] = {
    "log-plaintext": (
        "test_plaintext.py::test_spoken_canaries_are_nowhere_but_in_what_the_customer_opens",),
    "capture-ignores-policy": (
        "test_off_means_off.py::test_nothing_is_kept_from_off_periods_or_opted_out_participants",),
    "worker-ignores-policy": (
        "test_off_means_off.py::test_switching_off_purges_what_is_already_queued",),
    "skip-seal-context": (
        "test_moves.py::test_moved_audio_fails_authentication_and_is_purged",
        "test_moves.py::test_moved_transcripts_are_not_delivered"),
    "rotate-skips-rewrap": (
        "test_keys.py::test_rotation_rewraps_every_data_key_and_retiring_keeps_content",),
    "worker-ignores-revocation": ("test_keys.py::test_revocation_is_a_kill_switch",),
    "keep-audio": (
        "test_purge.py::test_audio_goes_when_transcribed_and_a_backup_dies_with_the_meeting",),
    "no-rotate-on-delete": (
        "test_purge.py::test_audio_goes_when_transcribed_and_a_backup_dies_with_the_meeting",),
    "audit-skip": ("test_audit.py::test_every_key_use_is_audited_and_tampering_is_named",),
    "no-tenant-check": (
        "test_isolation.py::test_another_tenant_finds_nothing_of_ours_on_any_route",),
}
BASELINE = "(none)"


@dataclass(frozen=True)
class Outcome:
    test: str
    result: str  # passed, failed, skipped, or missing
    why: str = ""


def _run(fault: str, tests: tuple[str, ...], out: Path) -> list[Outcome]:
    env = {k: v for k, v in os.environ.items()
           if k not in (faults.FAULTS_VAR, faults.ALLOW_VAR, "SEALSCRIBE_PRIVACY_REDIS_URL")}
    if fault != BASELINE:
        env |= {faults.FAULTS_VAR: fault, faults.ALLOW_VAR: faults.CONSENT}
    report = out / f"{fault}.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
         *(f"{HERE}/{t}" for t in tests)],
        cwd=ROOT, env=env, capture_output=True, timeout=400)
    (out / f"{fault}.log").write_bytes(proc.stdout + proc.stderr)
    results: dict[str, Outcome] = {}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            module = (case.get("classname") or "").rsplit(".", 1)[-1]
            name = f"{module}.py::{case.get('name')}"
            bad = case.find("failure")
            bad = case.find("error") if bad is None else bad
            skipped = case.find("skipped")
            if bad is not None and results.get(name, Outcome(name, "")).result != "failed":
                # a failure, or an error in set-up or tear-down (the first one is reported)
                first = (bad.get("message") or "").strip().splitlines()
                results[name] = Outcome(name, "failed", first[0][:160] if first else "")
            elif skipped is not None and name not in results:
                results[name] = Outcome(name, "skipped", skipped.get("message", ""))
            elif name not in results:
                results[name] = Outcome(name, "passed")
    return [results.get(t, Outcome(t, "missing", f"exit {proc.returncode}; see "
                                                  f"{out / (fault + '.log')}")) for t in tests]


@pytest.fixture(scope="module")
def mutation_runs(deployment: Deployment,
                  tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Outcome]]:
    deployment.need_local("injecting faults into the suite's own processes")
    require_espeak()  # else every run would skip, and a skip proves nothing
    out = tmp_path_factory.mktemp("mutations")
    targets = sorted({t for tests in MUTATIONS.values() for t in tests})
    unseen = tuple(t for t in targets if f"{HERE}/{t}" not in conftest.OUTCOMES)
    jobs = {**MUTATIONS, **({BASELINE: unseen} if unseen else {})}
    with ThreadPoolExecutor(int(os.environ.get("SEALSCRIBE_MUTATION_JOBS", "2"))) as pool:
        futures = {fault: pool.submit(_run, fault, tests, out) for fault, tests in jobs.items()}
        runs = {fault: f.result() for fault, f in futures.items()}
    baseline = {t: conftest.OUTCOMES.get(f"{HERE}/{t}", "missing") for t in targets}
    baseline |= {o.test: o.result for o in runs.pop(BASELINE, [])}
    conftest.MUTATION_TABLE[:] = [(fault, o.test, o.result, o.why, baseline[o.test])
                                  for fault, outcomes in runs.items() for o in outcomes]
    return runs | {BASELINE: [Outcome(t, r) for t, r in baseline.items()]}


def test_every_fault_is_exercised() -> None:
    assert set(MUTATIONS) == set(faults.PRIVACY)


def test_without_faults_every_guarantee_test_passes(
        mutation_runs: dict[str, list[Outcome]]) -> None:
    failing = [o for o in mutation_runs[BASELINE] if o.result != "passed"]
    assert not failing, failing


@pytest.mark.parametrize("fault", sorted(MUTATIONS))
def test_with_the_fault_the_guarantee_test_fails(
        fault: str, mutation_runs: dict[str, list[Outcome]]) -> None:
    survived = [o for o in mutation_runs[fault] if o.result != "failed"]
    assert not survived, f"with {fault} injected these did not fail: {survived}"
