"""Each fault test can fail: with the recovery mechanism it exercises switched off (one
fault from ``pipeline.faults.RECOVERY``) it must fail; without the fault it passes. Each
fault runs in its own pytest subprocess, two at a time (:mod:`tests.mutations`)."""

from __future__ import annotations

import pytest

from pipeline import faults
from tests import mutations
from tests.faults import conftest
from tests.mutations import BASELINE, Outcome
from tests.privacy.speech import require_espeak

# The module's first test waits for every run: 7 runs, 2 at a time, each bounded at 400 s.
pytestmark = [pytest.mark.mutation, pytest.mark.timeout(1500)]

HERE = "tests/faults"

#: fault -> the test that must fail with it
MUTATIONS: dict[str, tuple[str, ...]] = {
    "capture-drops-on-outage": (
        "test_redis_restart.py::test_a_redis_restart_mid_meeting_loses_no_segment",
    ),
    "worker-owns-work": (
        "test_worker_kill.py::test_a_worker_killed_mid_batch_loses_and_repeats_nothing",
    ),
    "bot-gives-up": ("test_janus_restart.py::test_a_janus_restart_is_a_reported_gap",),
    "captions-ignore-cursor": ("test_api_restart.py::test_captions_resume_across_an_api_restart",),
    "logs-unguarded": (
        "test_log_disk_full.py::test_a_full_log_disk_stops_neither_work_nor_privacy",
    ),
    "store-pins-primary": (
        "test_sentinel_failover.py::test_a_primary_failover_mid_meeting_loses_no_segment",
    ),
}


@pytest.fixture(scope="module")
def mutation_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Outcome]]:
    require_espeak()  # else every run would skip, and a skip proves nothing
    return mutations.run_all(
        {fault: tuple(f"{HERE}/{t}" for t in tests) for fault, tests in MUTATIONS.items()},
        conftest.OUTCOMES,
        tmp_path_factory.mktemp("mutations"),
        conftest.MUTATION_TABLE,
    )


def test_every_recovery_fault_is_exercised() -> None:
    assert set(MUTATIONS) == set(faults.RECOVERY)


def test_without_faults_every_fault_test_passes(mutation_runs: dict[str, list[Outcome]]) -> None:
    failing = [o for o in mutation_runs[BASELINE] if o.result != "passed"]
    assert not failing, failing


@pytest.mark.parametrize("fault", sorted(MUTATIONS))
def test_with_the_recovery_switched_off_its_fault_test_fails(
    fault: str, mutation_runs: dict[str, list[Outcome]]
) -> None:
    survived = [o for o in mutation_runs[fault] if o.result != "failed"]
    assert not survived, f"with {fault} injected these did not fail: {survived}"
