"""Shared fixtures, and the tiers. Integration tests use the real Redis at 127.0.0.1:6379
(database 15 by default; ``SEALSCRIBE_TEST_REDIS_URL`` overrides) and flush that database
around each test.

Markers come from the directory (:func:`pytest_collection_modifyitems`): every test outside
``tests/unit`` and ``tests/fuzz`` is ``integration`` (it starts or needs real services), and
the privacy, faults, deploy and security suites also carry their own. So ``pytest -m "not
integration"`` runs exactly the fast tier (unit and fuzz), without any service."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pipeline.config import Settings, get_settings
from pipeline.runtime import Runtime
from pipeline.store.connection import connect
from tests.harness.processes import TEST_BROKER_URL

TESTS = Path(__file__).resolve().parent
#: ../shared/data beside the checkout (where the test audio lives); tests skip without it
SHARED_DATA = TESTS.parents[1] / "shared" / "data"
#: directories of tests that need no service: the fast tier
FAST = frozenset({"unit", "fuzz"})
#: directories whose tests also carry a marker of their own name
SUITES = frozenset({"privacy", "faults", "deploy", "security"})
TEST_REDIS_URL = os.environ.get("SEALSCRIBE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def shared_data(*parts: str) -> Path:
    """A file under ../shared/data, or a skip that says why the test cannot run."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"test data {path} is absent (see shared/data/NOTICE.md)")
    return path


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            suite = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:  # not under tests/
            continue
        if suite not in FAST:
            item.add_marker(pytest.mark.integration)
        if suite in SUITES:
            item.add_marker(getattr(pytest.mark, suite))
    # a mutation test compares with this session's outcomes of its suite: it runs last
    items.sort(key=lambda item: item.get_closest_marker("mutation") is not None)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = connect(TEST_REDIS_URL)  # the store's own kind of client (a cluster's, say)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Redis at {TEST_REDIS_URL} is required for this test: {exc}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def settings(
    tmp_path: Path, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    home = tmp_path / "home"
    monkeypatch.setenv("SEALSCRIBE_HOME", str(home))
    monkeypatch.setenv("SEALSCRIBE_REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("SEALSCRIBE_BROKER_URL", TEST_BROKER_URL)  # (empty: the store's Redis)
    monkeypatch.setenv("SEALSCRIBE_KEY_PROVIDER", "local")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def rt(settings: Settings) -> Runtime:
    return Runtime.from_settings(settings, actor="test")
