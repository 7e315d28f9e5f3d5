"""Running tests against a build with one mechanism switched off (a fault from
``pipeline.faults``): the privacy suite's and the fault tests' proof that they can fail.

Each fault runs its tests in a pytest subprocess with ``SEALSCRIBE_FAULTS`` and the
tests-only consent set, so every process those tests start (Redis aside) carries the fault.
The baseline is this session's own outcome of the same tests (:func:`record`); tests that
did not run here get one fault-free run.
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

__all__ = ["BASELINE", "Outcome", "record", "run_all", "summary"]

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "(none)"


@dataclass(frozen=True)
class Outcome:
    test: str
    result: str  # passed, failed, skipped, or missing
    why: str = ""


def record(outcomes: dict[str, str], report: pytest.TestReport, prefix: str) -> None:
    """Keep ``report``'s outcome (pytest_runtest_logreport) if it is a test under
    ``prefix``: a failure in any phase makes the test failed."""
    if not report.nodeid.startswith(prefix):
        return
    if report.failed:
        outcomes[report.nodeid] = "failed"
    elif report.skipped:
        outcomes.setdefault(report.nodeid, "skipped")
    elif report.when == "call":
        outcomes.setdefault(report.nodeid, "passed")


def _run(fault: str, tests: tuple[str, ...], out: Path, timeout: float) -> list[Outcome]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (faults.FAULTS_VAR, faults.ALLOW_VAR, "SEALSCRIBE_PRIVACY_REDIS_URL")
    }
    if fault != BASELINE:
        env |= {faults.FAULTS_VAR: fault, faults.ALLOW_VAR: faults.CONSENT}
    report = out / f"{fault}.xml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            *tests,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=timeout,
    )
    (out / f"{fault}.log").write_bytes(proc.stdout + proc.stderr)
    results: dict[str, Outcome] = {}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            module = (case.get("classname") or "").replace(".", "/")
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
    return [
        results.get(
            t, Outcome(t, "missing", f"exit {proc.returncode}; see {out / (fault + '.log')}")
        )
        for t in tests
    ]


def run_all(
    mutations: dict[str, tuple[str, ...]],
    seen: dict[str, str],
    out: Path,
    table: list[tuple[str, str, str, str, str]],
    timeout: float = 400,
) -> dict[str, list[Outcome]]:
    """Run each fault's tests with the fault, two faults at a time, plus one fault-free
    run of the tests this session did not run (``seen``: node id -> outcome). Fills
    ``table`` with (fault, test, outcome, first line of its failure, outcome without)."""
    targets = sorted({t for tests in mutations.values() for t in tests})
    unseen = tuple(t for t in targets if t not in seen)
    jobs = {**mutations, **({BASELINE: unseen} if unseen else {})}
    with ThreadPoolExecutor(int(os.environ.get("SEALSCRIBE_MUTATION_JOBS", "2"))) as pool:
        futures = {
            fault: pool.submit(_run, fault, tests, out, timeout) for fault, tests in jobs.items()
        }
        runs = {fault: f.result() for fault, f in futures.items()}
    baseline = {t: seen.get(t, "missing") for t in targets}
    baseline |= {o.test: o.result for o in runs.pop(BASELINE, [])}
    table[:] = [
        (fault, o.test, o.result, o.why, baseline[o.test])
        for fault, outcomes in runs.items()
        for o in outcomes
    ]
    return runs | {BASELINE: [Outcome(t, r) for t, r in baseline.items()]}


def summary(
    terminalreporter: pytest.TerminalReporter,
    title: str,
    table: list[tuple[str, str, str, str, str]],
) -> None:
    """The table of a mutation run, at the end of the pytest session."""
    if not table:
        return
    write = terminalreporter.write_line
    terminalreporter.section(title)
    for fault, test, result, why, baseline in table:
        write(f"{fault:27} {result.upper():7} {test} ({baseline} without)")
        if why:
            write(f"{'':35} {why}")
