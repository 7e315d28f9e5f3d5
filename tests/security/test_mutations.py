"""Each security test can fail: with the defence it exercises switched off (one fault from
``pipeline.faults.SECURITY``) it must fail; without the fault it passes. Each fault runs in
its own pytest subprocess, two at a time (:mod:`tests.mutations`)."""

from __future__ import annotations

import pytest

from pipeline import faults
from tests import mutations
from tests.mutations import BASELINE, Outcome
from tests.security import conftest

pytestmark = [pytest.mark.mutation, pytest.mark.timeout(1500)]

HERE = "tests/security"

#: fault -> the tests that must fail with it (each defence adds its line)
MUTATIONS: dict[str, tuple[str, ...]] = {
    "egress-unchecked": (
        "test_egress.py::test_forbidden_addresses_are_refused_before_anything_is_sent",
    ),
    "egress-follows-redirects": (
        "test_egress.py::test_a_redirect_from_the_meeting_server_is_not_followed",
    ),
    "egress-reasons-differ": ("test_egress.py::test_every_failure_reads_the_same_to_the_tenant",),
    "ice-candidates-unchecked": (
        "test_egress.py::test_forbidden_ice_candidates_in_a_whip_offer_get_no_stun",
    ),
    "whip-reads-extra-tracks": ("test_whip_edge.py::test_extra_tracks_are_not_received",),
    "whip-sessions-unbounded": ("test_whip_edge.py::test_whip_sessions_are_capped",),
    "quotas-off": (
        "test_quotas.py::test_meeting_quota",
        "test_quotas.py::test_bot_quota",
        "test_quotas.py::test_publisher_quota",
        "test_quotas.py::test_request_rate",
    ),
    "ids-unchecked": ("test_small.py::test_ids_are_checked_at_every_edge",),
    "healthz-detail": ("test_small.py::test_healthz_hides_provider_errors",),
    "metrics-open": ("test_small.py::test_metrics_need_the_token",),
    "docs-on": ("test_small.py::test_docs_are_off_by_default",),
    "join-secret-in-clear": ("test_small.py::test_join_secret_is_sealed",),
    "webhook-secret-in-clear": ("test_webhooks.py::test_webhook_secret_is_sealed",),
    "shred-in-request": ("test_small.py::test_delete_shreds_in_the_background",),
    "token-scopes-ignored": (
        "test_tokens.py::test_every_route_needs_its_scope",
        "test_tokens.py::test_named_tokens_from_the_cli_are_scoped_rotated_revoked_and_expire",
    ),
    "auth-failures-unlimited": (
        "test_tokens.py::test_failed_authentications_are_limited_per_address",
    ),
    "long-token-in-url": (
        "test_caption_sockets.py::test_a_long_lived_token_in_the_url_is_refused",
    ),
    "caption-ticket-reusable": (
        "test_caption_sockets.py::"
        "test_a_ticket_opens_one_socket_on_its_meeting_and_is_stored_hashed",
    ),
    "caption-sockets-unbounded": (
        "test_caption_sockets.py::test_caption_sockets_are_capped_per_meeting_and_per_tenant",
    ),
    "caption-socket-outlives-token": (
        "test_caption_sockets.py::"
        "test_a_socket_ends_within_5_s_of_its_token_being_revoked_or_the_tenant_erased",
    ),
}


@pytest.fixture(scope="module")
def mutation_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Outcome]]:
    return mutations.run_all(
        {fault: tuple(f"{HERE}/{t}" for t in tests) for fault, tests in MUTATIONS.items()},
        conftest.OUTCOMES,
        tmp_path_factory.mktemp("mutations"),
        conftest.MUTATION_TABLE,
    )


def test_every_security_fault_is_exercised() -> None:
    assert set(MUTATIONS) == set(faults.SECURITY)


def test_without_faults_every_security_test_passes(
    mutation_runs: dict[str, list[Outcome]],
) -> None:
    failing = [o for o in mutation_runs[BASELINE] if o.result != "passed"]
    assert not failing, failing


@pytest.mark.parametrize("fault", sorted(MUTATIONS))
def test_with_the_defence_switched_off_its_security_test_fails(
    fault: str, mutation_runs: dict[str, list[Outcome]]
) -> None:
    survived = [o for o in mutation_runs[fault] if o.result != "failed"]
    assert not survived, f"with {fault} injected these did not fail: {survived}"
