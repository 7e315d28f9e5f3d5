"""The small hardening defaults, against real processes on loopback: ``sealscribe serve``,
``sealscribe bots`` and ``sealscribe worker --beat`` on a private redis-server, with a real
OpenBao (Transit) as the tenants' KMS behind a proxy a test can cut.

- ids are checked wherever one enters: a caption socket for ``M:keys`` closes 4404, the CLI
  answers "not found" (exit 3), a participant id with a control character is a 400;
- ``/healthz`` says "unavailable" to anyone and why (the KMS's error text) to admin tokens;
- ``/metrics`` and the bot and worker metrics ports need ``SEALSCRIBE_METRICS_TOKEN``;
- ``/docs`` and ``/redoc`` (a public CDN's scripts) are off unless ``SEALSCRIBE_API_DOCS=1``;
- the join URL's pin and API secret are never in Redis in the clear while the bot runs,
  yet the bot joins with them;
- a meeting delete shreds at once and rotates the tenant key in a worker: it succeeds during
  a KMS outage, and the rotation completes (retried) when the KMS is back.

Each test fails with its fault (``tests/security/test_mutations.py``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import httpx
import pytest

from pipeline.models import Scope
from pipeline.net import free_port
from pipeline.processes import wait_until
from pipeline.services.tokens import create_token
from pipeline.store import schema
from tests.harness.processes import ApiProcess
from tests.harness.stack import T
from tests.security.fake_janus import fake_janus
from tests.security.tenant_stack import TenantStack, tenant_stack

pytestmark = pytest.mark.timeout(300)

METRICS_TOKEN = "metrics-token-for-tests"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TenantStack]:
    with tenant_stack(
        tmp_path_factory.mktemp("small"),
        bots=True,
        worker=True,
        kms=True,
        bots_metrics=True,
        worker_metrics=True,
        SEALSCRIBE_METRICS_TOKEN=METRICS_TOKEN,
        SEALSCRIBE_SHRED_RETRY="2",
    ) as s:
        yield s


def _meeting(stack: TenantStack, tenant: T) -> str:
    with stack.http(tenant) as http:
        r = http.post("/v1/meetings", json={})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


# -- ids -------------------------------------------------------------------------------------


async def _close_code(url: str, token: str) -> int | None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws,
    ):
        msg = await ws.receive(timeout=20)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
        return ws.close_code


def test_ids_are_checked_at_every_edge(stack: TenantStack) -> None:
    """``M:keys`` names meeting M's wrapped keys, not a meeting: the caption socket closes
    4404 (not 1011 from a KeyError), the CLI says not found (exit 3, not an internal
    error), and so for a tenant id naming another record; a participant id with a control
    character is refused with 400."""
    a = stack.tenant("ids")
    m = _meeting(stack, a)
    ws = stack.api.url.replace("http://", "ws://") + f"/v1/meetings/{m}:keys/captions"
    assert asyncio.run(_close_code(ws, a.token)) == 4404

    code, out = stack.cli("meeting", "show", f"{m}:keys", "--json")
    assert code == 3 and "NotFound" in out, (code, out)
    code, out = stack.cli("keys", "status", "--tenant", f"{a.id}:meetings", "--json")
    assert code == 3 and "NotFound" in out, (code, out)

    with stack.http(a) as http:
        bad = quote("Ann\x07Bell", safe="")
        r = http.put(f"/v1/meetings/{m}/participants/{bad}/consent", json={"transcribe": False})
        assert r.status_code == 400 and "participant id" in r.json()["detail"], r.text
        r = http.put(
            f"/v1/meetings/{m}/participants/Ann%20Bell/consent", json={"transcribe": False}
        )
        assert r.status_code == 200 and r.json()["opted_out"] == ["Ann Bell"], r.text


# -- /healthz --------------------------------------------------------------------------------


def test_healthz_hides_provider_errors(stack: TenantStack) -> None:
    """With the KMS unreachable, /healthz answers 503 and "unavailable" to anyone, the
    KMS's own error text (its address) only to an admin token, and the API logs it."""
    assert stack.kms is not None
    a = stack.tenant("health")
    reader, read_token = create_token(stack.rt, a.id, "reader", [Scope.READ])
    kms_address = stack.kms.url.removeprefix("http://")
    stack.kms.stop()
    try:
        with httpx.Client(base_url=stack.api.url, timeout=30) as http:

            def unhealthy() -> httpx.Response | None:
                resp = http.get("/healthz")
                return resp if resp.status_code == 503 else None

            r = wait_until(unhealthy, 20, "/healthz to see the KMS down", interval=0.5)
            doc = r.json()
            assert doc["key_providers"] == "unavailable" and doc["ok"] is False, doc
            assert doc.get("key_providers_detail") is None, doc
            assert kms_address not in r.text and "unreachable" not in r.text, r.text
            # a token without the admin scope sees no more than anyone
            seen = http.get("/healthz", headers={"Authorization": f"Bearer {read_token}"}).json()
            assert seen.get("key_providers_detail") is None, seen
            admin = http.get("/healthz", headers={"Authorization": f"Bearer {a.token}"}).json()
            assert "unreachable" in (admin.get("key_providers_detail") or ""), admin
        assert re.search(r"key provider is unavailable: KeyUnavailable", stack.api.tail(20000))
    finally:
        stack.kms.start()
    del reader


# -- /metrics --------------------------------------------------------------------------------


def test_metrics_need_the_token(stack: TenantStack) -> None:
    """SEALSCRIBE_METRICS_TOKEN set: the API's /metrics and the bot and worker metrics
    ports answer 401 without it (or with another), and the metrics with it."""
    endpoints = [
        f"{stack.api.url}/metrics",
        f"http://127.0.0.1:{stack.ports['bots']}/metrics",
        f"http://127.0.0.1:{stack.ports['worker']}/metrics",
    ]
    with httpx.Client(timeout=30) as http:
        for url in endpoints:
            assert http.get(url).status_code == 401, url
            wrong = {"Authorization": "Bearer not-the-token"}
            assert http.get(url, headers=wrong).status_code == 401, url
            right = http.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            assert right.status_code == 200 and "# HELP" in right.text, (url, right.text[:200])
        r = http.get(endpoints[0])
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"] == "Bearer"


# -- /docs -----------------------------------------------------------------------------------


def test_docs_are_off_by_default(stack: TenantStack, tmp_path: Path) -> None:
    """/docs and /redoc (which load scripts from a public CDN into the API's origin) are
    not served unless SEALSCRIBE_API_DOCS=1; /openapi.json always is."""
    with httpx.Client(base_url=stack.api.url, timeout=30) as http:
        assert http.get("/docs").status_code == 404
        assert http.get("/redoc").status_code == 404
        assert http.get("/openapi.json").status_code == 200
    env = {**stack.env, "SEALSCRIBE_API_DOCS": "1", "TMPDIR": str(tmp_path)}
    api = ApiProcess(free_port(), env, tmp_path / "api-docs.log")
    api.start()
    try:
        with httpx.Client(base_url=api.url, timeout=30) as http:
            docs = http.get("/docs")
            assert docs.status_code == 200 and "swagger-ui" in docs.text
    finally:
        api.stop()


# -- the join URL ----------------------------------------------------------------------------

PIN = "pin-canary-7f3e91"
SECRET = "secret-canary-c2a84d"


def test_join_secret_is_sealed(stack: TenantStack) -> None:
    """While the bot is in the meeting, neither the pin nor the API secret of its join URL
    is anywhere in Redis (in any encoding ``sealscribe scan`` knows), nor in the logs; yet
    the bot joined with both, so it opened the sealed URL."""
    a = stack.tenant("join")
    m = _meeting(stack, a)
    with fake_janus() as janus, stack.http(a) as http:
        url = janus.url(1234, f"pin={PIN}&secret={SECRET}")
        r = http.post(f"/v1/meetings/{m}/bot", json={"url": url})
        assert r.status_code == 202, r.text
        assert PIN not in r.text and SECRET not in r.text
        wait_until(lambda: janus.seen.publisher_joins, 30, "the bot to join")
        wait_until(
            lambda: http.get(f"/v1/meetings/{m}/bot").json()["state"] == "in_meeting",
            30,
            "the bot in the meeting",
        )
        assert janus.seen.publisher_joins[0].get("pin") == PIN
        assert SECRET in janus.seen.apisecrets
        for canary in (PIN, SECRET):
            code, out = stack.cli("scan", "--canary", canary, "--log-dir", str(stack.root))
            assert code == 0, out
        assert http.delete(f"/v1/meetings/{m}/bot").status_code == 202


# -- deleting a meeting ----------------------------------------------------------------------


def test_delete_shreds_in_the_background(stack: TenantStack) -> None:
    """The KMS is down: a meeting delete still answers 204 at once (no key rotation inside
    the request), the meeting is gone and its keys destroyed, marked as pending; when the
    KMS is back a worker rotates the tenant key and retires the old versions (retried by the
    beat), and the other meetings' keys still open. The CLI reports a completed shred."""
    assert stack.kms is not None
    a = stack.tenant("shred")
    doomed, kept, later = (_meeting(stack, a) for _ in range(3))
    with stack.http(a) as http:
        before = http.get("/v1/keys").json()
        stack.kms.stop()
        try:
            start = time.monotonic()
            r = http.delete(f"/v1/meetings/{doomed}")
            took = time.monotonic() - start
            assert r.status_code == 204, r.text
            assert took < 5, f"the delete took {took:.1f} s"
            assert http.get(f"/v1/meetings/{doomed}").status_code == 404
            assert doomed not in [m["id"] for m in http.get("/v1/meetings").json()]
            assert not stack.rt.store.redis.exists(schema.meeting_keys(doomed))
            meeting = (a.id, doomed)
            assert meeting in stack.rt.store.meetings.pending_shreds(a.id)
            time.sleep(4)  # the worker tries (and fails) meanwhile: still pending
            assert meeting in stack.rt.store.meetings.pending_shreds(a.id)
        finally:
            stack.kms.start()
        wait_until(
            lambda: not stack.rt.store.meetings.pending_shreds(a.id),
            60,
            "the worker to rotate and retire the tenant key",
            interval=0.5,
        )
        after = http.get("/v1/keys").json()
        assert after["primary_version"] > before["primary_version"], (before, after)
        assert after["versions"] == [after["primary_version"]], after
        done = [
            (e.action, e.actor)
            for e in stack.rt.keys.audit.entries(a.id)
            if e.action in ("rotate", "retire") and e.outcome == "ok"
        ]
        assert {action for action, _ in done} == {"rotate", "retire"}, done
        assert all(actor.startswith("worker:") for _, actor in done), done
        assert http.get(f"/v1/meetings/{kept}/transcript").status_code == 200

    code, out = stack.cli("meeting", "delete", later, "--yes", "--json")
    assert code == 0 and '"shredded": true' in out, (code, out)
