"""The security tests' session bookkeeping: each test's outcome here is the baseline of the
mutation run (``test_mutations.py``), which therefore runs last."""

from __future__ import annotations

import pytest

from tests import mutations

#: outcome of each fault test in this session
OUTCOMES: dict[str, str] = {}
#: (fault, test, outcome with the fault, first line of its failure, outcome without)
MUTATION_TABLE: list[tuple[str, str, str, str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    mutations.record(OUTCOMES, report, "tests/security/")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    mutations.summary(
        terminalreporter, "security mutations: fault -> test (without the fault)", MUTATION_TABLE
    )
