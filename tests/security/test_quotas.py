"""Per-tenant quotas against real processes on loopback (``sealscribe serve``, ``sealscribe
bots``, a private redis-server): meetings, bots in meetings, publishers a bot follows, and
requests per second. Excess answers 429 with ``Retry-After`` and a problem document, counted
in Redis across processes, and one tenant at its quota leaves the others unaffected.

Each test fails with the ``quotas-off`` fault (``tests/security/test_mutations.py``).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.processes import wait_until
from tests.security.fake_janus import FakeJanus, fake_janus
from tests.security.tenant_stack import tenant_stack

pytestmark = pytest.mark.timeout(300)


def assert_quota_problem(r: httpx.Response, setting: str) -> None:
    """429, ``Retry-After`` in whole seconds, and a problem document naming the setting."""
    assert r.status_code == 429, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) >= 1
    doc = r.json()
    assert doc["status"] == 429 and doc["type"].endswith("/quota-exceeded"), doc
    assert setting in doc["detail"], doc


# -- meetings --------------------------------------------------------------------------------


def test_meeting_quota(tmp_path: Path) -> None:
    """SEALSCRIBE_QUOTA_MEETINGS=3: of ten creates at once, through two API processes,
    exactly three succeed; the CLI is refused with exit 9; another tenant is unaffected; a
    delete frees a place."""
    with tenant_stack(tmp_path, apis=2, SEALSCRIBE_QUOTA_MEETINGS="3") as stack:
        a, b = stack.tenant("a"), stack.tenant("b")

        def create(i: int) -> httpx.Response:
            with stack.http(a, api=i % 2) as http:
                return http.post("/v1/meetings", json={})

        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(create, range(10)))
        created = [r.json()["id"] for r in answers if r.status_code == 201]
        refused = [r for r in answers if r.status_code != 201]
        assert len(created) == 3, [r.status_code for r in answers]
        for r in refused:
            assert_quota_problem(r, "SEALSCRIBE_QUOTA_MEETINGS")
        assert stack.rt.store.meetings.count(a.id) == 3

        code, out = stack.cli("meeting", "create", "--tenant", a.id, "--json")
        assert code == 9 and "SEALSCRIBE_QUOTA_MEETINGS" in out, (code, out)

        with stack.http(b) as http:  # another tenant has its own quota
            assert http.post("/v1/meetings", json={}).status_code == 201
        with stack.http(a) as http:
            assert http.delete(f"/v1/meetings/{created[0]}").status_code == 204
            assert http.post("/v1/meetings", json={}).status_code == 201
            assert_quota_problem(http.post("/v1/meetings", json={}), "SEALSCRIBE_QUOTA_MEETINGS")


# -- bots and publishers ---------------------------------------------------------------------


@pytest.fixture
def janus() -> Iterator[FakeJanus]:
    with fake_janus(publishers=300) as server:
        yield server


def _meeting(http: httpx.Client) -> str:
    r = http.post("/v1/meetings", json={})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _join(http: httpx.Client, meeting: str, url: str) -> httpx.Response:
    return http.post(f"/v1/meetings/{meeting}/bot", json={"url": url})


def test_bot_quota(tmp_path: Path, janus: FakeJanus) -> None:
    """SEALSCRIBE_QUOTA_BOTS=2 across two API processes and a running bot service: a third
    bot is refused, another tenant's is not, and calling one back frees a place."""
    with tenant_stack(tmp_path, apis=2, bots=True, SEALSCRIBE_QUOTA_BOTS="2") as stack:
        a, b = stack.tenant("a"), stack.tenant("b")
        with stack.http(a, 0) as a0, stack.http(a, 1) as a1, stack.http(b) as hb:
            meetings = [_meeting(a0) for _ in range(3)]
            assert _join(a0, meetings[0], janus.url()).status_code == 202
            assert _join(a1, meetings[1], janus.url()).status_code == 202
            assert_quota_problem(_join(a0, meetings[2], janus.url()), "SEALSCRIBE_QUOTA_BOTS")
            assert_quota_problem(_join(a1, meetings[2], janus.url()), "SEALSCRIBE_QUOTA_BOTS")
            assert _join(hb, _meeting(hb), janus.url()).status_code == 202
            wait_until(lambda: len(janus.seen.publisher_joins) >= 3, 30, "three bots joined")
            stack.bots.check_alive()  # type: ignore[union-attr]

            assert a1.delete(f"/v1/meetings/{meetings[0]}/bot").status_code == 202
            assert _join(a0, meetings[2], janus.url()).status_code == 202


def test_publisher_quota(tmp_path: Path, janus: FakeJanus) -> None:
    """SEALSCRIBE_QUOTA_PUBLISHERS=5: a meeting server that lists 300 publishers gets
    subscriptions to 5 of them; the others are ignored, and logged once."""
    with tenant_stack(tmp_path, bots=True, SEALSCRIBE_QUOTA_PUBLISHERS="5") as stack:
        a = stack.tenant("a")
        with stack.http(a) as http:
            meeting = _meeting(http)
            assert _join(http, meeting, janus.url()).status_code == 202
            wait_until(lambda: janus.seen.publisher_joins, 30, "the bot joined")
            wait_until(
                lambda: http.get(f"/v1/meetings/{meeting}/bot").json()["state"] == "in_meeting",
                30,
                "the bot in the meeting",
            )
            time.sleep(3)  # every subscription it would start has started
        assert 1 <= len(janus.seen.subscriber_joins) <= 5, len(janus.seen.subscriber_joins)
        assert stack.bots is not None
        log = stack.bots.log.read_text(errors="replace")
        assert log.count("SEALSCRIBE_QUOTA_PUBLISHERS") == 1, log[-2000:]


# -- requests per second ---------------------------------------------------------------------


def test_request_rate(tmp_path: Path) -> None:
    """SEALSCRIBE_QUOTA_RPS=5 (a bucket of 10): a tenant firing 60 requests as fast as it
    can, through two API processes, gets no more through than the bucket and its refill
    allow, the rest 429 with Retry-After; another tenant is served meanwhile."""
    with tenant_stack(tmp_path, apis=2, SEALSCRIBE_QUOTA_RPS="5") as stack:
        a, b = stack.tenant("a"), stack.tenant("b")
        clients = [stack.http(a, 0), stack.http(a, 1)]
        try:
            start = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(lambda i: clients[i % 2].get("/v1/meetings"), range(60)))
            elapsed = time.monotonic() - start
        finally:
            for c in clients:
                c.close()
        passed = sum(r.status_code == 200 for r in answers)
        refused = [r for r in answers if r.status_code != 200]
        allowed = 10 + 5 * elapsed + 1
        assert passed <= allowed, (
            f"{passed} requests passed in {elapsed:.1f} s (at most {allowed:.0f})"
        )
        assert passed >= 10, passed
        assert refused
        for r in refused:
            assert_quota_problem(r, "SEALSCRIBE_QUOTA_RPS")
        with stack.http(b, 1) as hb:
            assert hb.get("/v1/meetings").status_code == 200
        time.sleep(1.5)  # the bucket refills
        with stack.http(a, 0) as ha:
            assert ha.get("/v1/meetings").status_code == 200
