"""Each privacy test can fail: run it against a build with the mechanism it guards switched
off (one fault from ``pipeline.faults``), and it must fail; without the fault it passes.

Every fault runs in its own pytest subprocess (its own redis-server, API and worker), two
at a time (:mod:`tests.mutations`).
"""

from __future__ import annotations

import pytest

from pipeline import faults
from tests import mutations
from tests.mutations import BASELINE, Outcome
from tests.privacy import conftest
from tests.privacy.deployment import Deployment
from tests.privacy.speech import require_espeak

# The module's first test waits for every run: 16 runs, 2 at a time, each bounded at 400 s.
pytestmark = [pytest.mark.mutation, pytest.mark.timeout(3600)]

HERE = "tests/privacy"

#: fault -> the tests that must fail with it (the guarantee's tests, see PRIVACY.md)
MUTATIONS: dict[str, tuple[str, ...]] = {
    "log-plaintext": (
        "test_plaintext.py::test_spoken_canaries_are_nowhere_but_in_what_the_customer_opens",
    ),
    "capture-ignores-policy": (
        "test_off_means_off.py::test_nothing_is_kept_from_off_periods_or_opted_out_participants",
        "test_consent.py::test_in_an_opt_in_meeting_nobody_is_kept_until_they_consent",
    ),
    "worker-ignores-policy": (
        "test_off_means_off.py::test_switching_off_purges_what_is_already_queued",
    ),
    "skip-seal-context": (
        "test_moves.py::test_moved_audio_fails_authentication_and_is_purged",
        "test_moves.py::test_moved_transcripts_are_not_delivered",
    ),
    "rotate-skips-rewrap": (
        "test_keys.py::test_rotation_rewraps_every_data_key_and_retiring_keeps_content",
    ),
    "worker-ignores-revocation": ("test_keys.py::test_revocation_is_a_kill_switch",),
    "keep-audio": (
        "test_purge.py::test_audio_goes_when_transcribed_and_a_backup_dies_with_the_meeting",
    ),
    "keep-interims": ("test_purge.py::test_interim_captions_go_when_their_final_lands",),
    "no-rotate-on-delete": (
        "test_purge.py::test_audio_goes_when_transcribed_and_a_backup_dies_with_the_meeting",
    ),
    "audit-skip": ("test_audit.py::test_every_key_use_is_audited_and_tampering_is_named",),
    "no-tenant-check": (
        "test_isolation.py::test_another_tenant_finds_nothing_of_ours_on_any_route",
    ),
    "audit-unkeyed": ("test_records.py::test_a_rewrite_with_recomputed_hashes_is_named",),
    "audit-ignores-head": ("test_records.py::test_a_truncation_is_named_against_a_saved_head",),
    "no-manifest": ("test_records.py::test_a_deleted_segment_and_a_deleted_transcript_are_named",),
    "erase-keeps-keys": (
        "test_records.py::"
        "test_a_participant_erased_across_three_meetings_is_unreadable_even_from_a_backup",
    ),
    "receipt-unkeyed": ("test_records.py::test_an_edited_erasure_receipt_fails_verification",),
}


@pytest.fixture(scope="module")
def mutation_runs(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[Outcome]]:
    deployment.need_local("injecting faults into the suite's own processes")
    require_espeak()  # else every run would skip, and a skip proves nothing
    return mutations.run_all(
        {fault: tuple(f"{HERE}/{t}" for t in tests) for fault, tests in MUTATIONS.items()},
        conftest.OUTCOMES,
        tmp_path_factory.mktemp("mutations"),
        conftest.MUTATION_TABLE,
    )


def test_every_fault_is_exercised() -> None:
    assert set(MUTATIONS) == set(faults.PRIVACY)


def test_without_faults_every_guarantee_test_passes(
    mutation_runs: dict[str, list[Outcome]],
) -> None:
    failing = [o for o in mutation_runs[BASELINE] if o.result != "passed"]
    assert not failing, failing


@pytest.mark.parametrize("fault", sorted(MUTATIONS))
def test_with_the_fault_the_guarantee_test_fails(
    fault: str, mutation_runs: dict[str, list[Outcome]]
) -> None:
    survived = [o for o in mutation_runs[fault] if o.result != "failed"]
    assert not survived, f"with {fault} injected these did not fail: {survived}"
