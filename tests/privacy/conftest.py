"""The privacy suite's set-up: the system under test, the canary sampler, and the options
that point the suite at an existing deployment instead of starting one.

Run it alone with ``pytest tests/privacy``. Against a deployment you run::

    pytest tests/privacy --deployment-url https://sealscribe.example \\
        --deployment-redis redis://redis.example:6379/0 \\
        --deployment-token sst_A [--deployment-other-token sst_B] \\
        [--deployment-revoke-token sst_R] [--deployment-scan-dir /mnt/sealscribe-logs ...]

Tests that need to control the processes (pause the workers, inject faults) skip there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.capture.ice import configure_ice
from tests import mutations
from tests.privacy.deployment import Deployment, LocalStack, is_loopback
from tests.privacy.sampler import Sampler
from tests.privacy.speech import CANARIES

#: outcome of each privacy test in this session: the mutation test's baseline
OUTCOMES: dict[str, str] = {}
#: (fault, test, outcome with the fault, first line of its failure, outcome without)
MUTATION_TABLE: list[tuple[str, str, str, str, str]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sealscribe privacy suite")
    group.addoption(
        "--deployment-url",
        default=None,
        help="run the privacy suite against this sealscribe API instead of starting one",
    )
    group.addoption(
        "--deployment-redis",
        default=None,
        help="the deployment's Redis URL (read for plaintext and sealed keys; "
        "the suite writes only under its own tenants)",
    )
    group.addoption(
        "--deployment-token",
        default=None,
        help="API token of a tenant the suite may use (tenant A)",
    )
    group.addoption(
        "--deployment-other-token",
        default=None,
        help="API token of a second tenant (B), for the isolation tests",
    )
    group.addoption(
        "--deployment-revoke-token",
        default=None,
        help="API token of a tenant the suite may REVOKE (irreversible)",
    )
    group.addoption(
        "--deployment-scan-dir",
        action="append",
        default=[],
        type=Path,
        help="a directory of the deployment (logs, home, temp) readable here, "
        "to scan for plaintext; repeatable",
    )
    group.addoption(
        "--deployment-ice-hosts",
        default=None,
        help="ICE host addresses for the suite's WebRTC publishers (default: "
        "127.0.0.1 for a loopback URL, every interface otherwise)",
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    mutations.record(OUTCOMES, report, "tests/privacy/")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    mutations.summary(
        terminalreporter, "privacy mutations: fault -> test (without the fault)", MUTATION_TABLE
    )


def _option(config: pytest.Config, name: str) -> object:
    # None also when this conftest was loaded after the command line was parsed (``pytest``
    # from the root, where the options are not given anyway)
    return config.getoption(name, default=None)


@pytest.fixture(scope="session")
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    config = request.config
    url = _option(config, "deployment_url")
    if url:
        redis_url = _option(config, "deployment_redis")
        if not redis_url:
            pytest.fail(
                "--deployment-url needs --deployment-redis: the suite reads Redis to "
                "look for plaintext and sealed keys"
            )
        tokens = {
            role: str(value)
            for role, option in (
                ("a", "deployment_token"),
                ("b", "deployment_other_token"),
                ("revoke", "deployment_revoke_token"),
            )
            if (value := _option(config, option))
        }
        if "a" not in tokens:
            pytest.fail("--deployment-url needs --deployment-token (a tenant to test with)")
        ice = _option(config, "deployment_ice_hosts")
        configure_ice(str(ice) if ice else ("127.0.0.1" if is_loopback(str(url)) else ""))
        dirs = list(_option(config, "deployment_scan_dir") or [])  # type: ignore[call-overload]
        found = Deployment(str(url).rstrip("/"), str(redis_url), None, tokens, dirs)
        yield found
        found.close()
        configure_ice("")
        return
    local = LocalStack(
        tmp_path_factory.mktemp("sealscribe"), os.environ.get("SEALSCRIBE_PRIVACY_REDIS_URL")
    )
    with local.running():
        found = Deployment(local.api_url, local.redis_url, local, {}, local.scan_dirs)
        yield found
        found.close()


@pytest.fixture
def sampler(deployment: Deployment) -> Iterator[Sampler]:
    """Scans for every canary, every half second, for the whole test; fails it on any
    finding."""
    s = Sampler(deployment.redis_url, CANARIES, deployment.scan_dirs).start()
    try:
        yield s
    finally:
        s.stop()
    assert not s.found, s.report()
