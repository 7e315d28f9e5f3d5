"""Webhook endpoints as a tenant's attack surface: their signing secrets are shown once and
stored sealed, and only the tenant that made an endpoint can see or change it. And what a
real bot service says about a bot reaches a receiver, signed, in order, as states only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from standardwebhooks import Webhook

from pipeline.processes import wait_until
from tests.harness.webhook_receiver import Receiver
from tests.security.fake_janus import fake_janus
from tests.security.tenant_stack import TenantStack, tenant_stack

pytestmark = pytest.mark.timeout(300)

#: an address the stack's egress policy allows (nothing listens: nothing is delivered here)
URL = "http://127.0.0.1:9/hook"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TenantStack]:
    with tenant_stack(tmp_path_factory.mktemp("webhooks"), bots=True, worker=True) as s:
        yield s


def test_webhook_secret_is_sealed(stack: TenantStack) -> None:
    """Neither the secret nor its key bytes are anywhere in Redis (in any encoding
    ``sealscribe scan`` knows) or the logs, after it is made and after it is rotated; the
    API shows each secret once, in the answer that makes it."""
    a = stack.tenant("hooks")
    with stack.http(a) as http:
        r = http.post("/v1/webhooks", json={"url": URL, "events": ["key.rotated"]})
        assert r.status_code == 201, r.text
        made = r.json()
        rotated = http.post(f"/v1/webhooks/{made['id']}/rotate-secret")
        assert rotated.status_code == 200, rotated.text
        shown = [made["secret"], rotated.json()["secret"]]
        listed = http.get("/v1/webhooks")
        one = http.get(f"/v1/webhooks/{made['id']}")
    assert shown[0] != shown[1] and all(s.startswith("whsec_") for s in shown)
    for secret in shown:
        assert secret not in listed.text and secret not in one.text
        for canary in (secret, secret.removeprefix("whsec_")):
            code, out = stack.cli("scan", "--canary", canary, "--log-dir", str(stack.root))
            assert code == 0, out


def test_another_tenants_endpoints_are_not_found(stack: TenantStack) -> None:
    a, b = stack.tenant("owner"), stack.tenant("other")
    with stack.http(a) as http:
        made = http.post("/v1/webhooks", json={"url": URL}).json()
    with stack.http(b) as http:
        assert http.get("/v1/webhooks").json() == []
        for method, path in (
            ("GET", ""),
            ("DELETE", ""),
            ("POST", "/rotate-secret"),
            ("GET", "/log"),
        ):
            r = http.request(method, f"/v1/webhooks/{made['id']}{path}")
            assert r.status_code == 404, (method, path, r.text)
        r = http.post(f"/v1/webhooks/{made['id']}/replay", json={})
        assert r.status_code == 404, r.text
    with stack.http(a) as http:
        assert [e["id"] for e in http.get("/v1/webhooks").json()] == [made["id"]]


def test_bot_states_reach_a_receiver_in_order(stack: TenantStack) -> None:
    """A bot sent by the API, run by the bot service, called back: the receiver gets
    requested, joining, in_meeting, left, then "transcript ready", each verified, with
    states and ids only (never the join URL's pin)."""
    a = stack.tenant("bots")
    receiver = Receiver().start()
    try:
        with stack.http(a) as http, fake_janus() as janus:
            events = ["bot.state_changed", "meeting.transcript_ready"]
            made = http.post("/v1/webhooks", json={"url": receiver.url, "events": events}).json()
            m = http.post("/v1/meetings", json={}).json()["id"]
            r = http.post(f"/v1/meetings/{m}/bot", json={"url": janus.url(1234, "pin=pin-9x8y")})
            assert r.status_code == 202, r.text
            wait_until(
                lambda: http.get(f"/v1/meetings/{m}/bot").json()["state"] == "in_meeting",
                30,
                "the bot in the meeting",
            )
            assert http.delete(f"/v1/meetings/{m}/bot").status_code == 202
            wait_until(
                lambda: any(b"transcript_ready" in x.body for x in receiver.snapshot()),
                30,
                "transcript ready",
            )
    finally:
        receiver.stop()
    got = receiver.snapshot()
    hook = Webhook(made["secret"])
    seen: dict[str, tuple[str, str]] = {}
    for x in got:
        body = hook.verify(x.body, x.headers)
        assert body["data"]["meeting_id"] == m
        seen.setdefault(x.headers["webhook-id"], (body["type"], body["data"].get("state", "")))
        assert b"pin-9x8y" not in x.body
    assert list(seen.values()) == [
        ("bot.state_changed", "requested"),
        ("bot.state_changed", "joining"),
        ("bot.state_changed", "in_meeting"),
        ("bot.state_changed", "left"),
        ("meeting.transcript_ready", ""),
    ], list(seen.values())
