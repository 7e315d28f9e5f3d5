"""Guarantee 8: tenants are isolated. A token of tenant B gets 404 for everything of tenant
A, on every route of the API (read from the live OpenAPI document, so a new route cannot
slip past) and on the captions WebSocket; B's own views hold nothing of A, and nothing B
does changes anything of A's."""

from __future__ import annotations

import asyncio
import io
import zipfile
from typing import Any

import aiohttp
import httpx

from tests.privacy.deployment import Api, Deployment, T
from tests.privacy.live import participant, settled, words
from tests.privacy.sampler import Sampler
from tests.privacy.speech import PHRASES, require_espeak

Route = tuple[str, str]
METHODS = ("get", "put", "post", "delete", "patch")
SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


def request_for(route: Route, caller: T, victim: T) -> dict[str, Any]:
    """What ``caller`` sends to ``route``: a request that route would accept, if it were
    the caller's own. A route missing here fails the test: every route is checked."""
    bodies: dict[Route, dict[str, Any]] = {
        ("POST", "/v1/meetings"): {"json": {}},
        ("PUT", "/v1/tenant/retention"): {"json": {"transcript_ttl": 86400}},
        ("PUT", "/v1/meetings/{meeting_id}/transcription"): {"json": {"enabled": False}},
        ("PUT", "/v1/meetings/{meeting_id}/participants/{participant}/consent"): {
            "json": {"transcribe": True}
        },
        ("POST", "/v1/meetings/{meeting_id}/bot"): {"json": {"url": "janus://127.0.0.1/1"}},
        ("POST", "/v1/keys/retire"): {"json": {"below": 1}},
        # the caller confirms revoking the victim: refused (400), nobody is revoked
        ("POST", "/v1/keys/revoke"): {"json": {"confirm": f"revoke {victim.id}"}},
        ("POST", "/v1/meetings/{meeting_id}/whip"): {
            "content": SDP,
            "headers": {"Content-Type": "application/sdp"},
        },
        ("POST", "/v1/tokens"): {"json": {"name": "b's own", "scopes": ["read"]}},
        # b's own endpoint (on loopback: refused by the egress policy, or b's own)
        ("POST", "/v1/webhooks"): {"json": {"url": "http://127.0.0.1:9/b", "events": ["*"]}},
        ("POST", "/v1/webhooks/{endpoint_id}/replay"): {"json": {}},
        ("PUT", "/v1/meetings/{meeting_id}/participants/{participant}/subject"): {
            "json": {"subject": "b-subject"}
        },
        ("POST", "/v1/audit/verify"): {"json": {}},
        ("PUT", "/v1/meetings/{meeting_id}/consent-mode"): {"json": {"mode": "opt-in"}},
        ("POST", "/v1/meetings/{meeting_id}/participants/{participant}/link"): {"json": {}},
        # b erases the victim's opted-out participant: nobody of that name is b's (404)
        ("POST", "/v1/participants/erase"): {"json": {"name": "Olive", "confirm": "erase"}},
        # a receipt naming the victim: not b's to check (400)
        ("POST", "/v1/audit/receipts/verify"): {
            "json": {
                "tenant": victim.id,
                "subject": "name:Olive",
                "erased_at": 0,
                "meetings": [],
                "key_version": None,
                "audit_head": None,
                "mac": "",
            }
        },
    }
    return bodies.get(route, {})


def needs_body(operation: dict[str, Any]) -> bool:
    return bool(
        operation.get("requestBody", {}).get("required")
    ) or "application/json" in operation.get("requestBody", {}).get("content", {})


async def _captions_close(api: Api, meeting_id: str) -> int | None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            api.captions(meeting_id), headers={"Authorization": f"Bearer {api.token}"}
        ) as ws,
    ):
        await ws.receive(timeout=10)
        return ws.close_code


def test_another_tenant_finds_nothing_of_ours_on_any_route(
    deployment: Deployment, sampler: Sampler
) -> None:
    require_espeak()
    a, b = deployment.tenant("a"), deployment.tenant("b")
    api_a, api_b = deployment.api(a), deployment.api(b)
    r = deployment.redis()
    schema = httpx.get(f"{deployment.api_url}/openapi.json", timeout=30).json()
    routes = {
        (method.upper(), path): op
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }
    secured = {route: op for route, op in routes.items() if op.get("security")}
    assert secured, "the OpenAPI document declares no secured routes"
    missing = [
        route for route, op in secured.items() if needs_body(op) and not request_for(route, b, a)
    ]
    assert not missing, f"the isolation test does not know how to call {missing}"

    m = api_a.meeting()
    api_a.consent(m, "Olive", transcribe=False)
    api_a.ok("POST", f"/v1/meetings/{m}/bot", json={"url": "janus://127.0.0.1:8088/1234"})
    keys_a = api_a.ok("GET", "/v1/keys")
    tokens_a = api_a.ok("GET", "/v1/tokens")
    checked: dict[Route, int] = {}

    async def meeting() -> dict[str, Any]:
        async with participant(api_a, m, "Alice") as alice:
            await alice.says(PHRASES["Flintwick"])
            await asyncio.to_thread(settled, r, m)
            assert alice.session is not None
            session = alice.session.rsplit("/", 1)[1]
            before = await asyncio.to_thread(api_a.ok, "GET", f"/v1/meetings/{m}")
            token_id = tokens_a[0]["id"]  # B revoking or rotating A's token: not found
            endpoint = await asyncio.to_thread(  # B reading or replaying A's webhook: not found
                api_a.ok, "POST", "/v1/webhooks", json={"url": "http://127.0.0.1:9/a"}
            )
            ids = {
                "meeting_id": m,
                "participant": "Olive",
                "session_id": session,
                "token_id": token_id,
                "endpoint_id": endpoint["id"],
                "kind": "join",
            }
            secrets = [a.id, m, session, "flintwick", "Olive", token_id, endpoint["id"]]
            secrets.append(endpoint["secret"])
            for (method, template), _op in sorted(secured.items()):
                path = template.format(**ids)
                sent = request_for((method, template), b, a)
                got = await asyncio.to_thread(api_b, method, path, **sent)
                checked[(method, template)] = got.status_code
                text = (
                    got.content.lower()
                    if not got.headers.get("content-type", "").startswith("application/zip")
                    else _unzipped(got)
                )
                # an error may name what B itself sent (the meeting id in the path): no more
                leaked = [
                    s
                    for s in secrets
                    if s.lower().encode() in text and s not in path and s not in str(sent)
                ]
                assert not leaked, f"{method} {template} showed B {leaked}"
            # A's own session is untouched by all that: it still answers A
            resource = await asyncio.to_thread(api_a, "PATCH", alice.session)
            assert resource.status_code == 405
            return dict(before)

    before = asyncio.run(meeting())
    scoped = {route: status for route, status in checked.items() if "{meeting_id}" in route[1]}
    assert scoped and set(scoped.values()) == {404}, scoped
    assert checked[("POST", "/v1/keys/revoke")] == 400
    assert checked[("DELETE", "/v1/tokens/{token_id}")] == 404
    assert checked[("POST", "/v1/tokens/{token_id}/rotate")] == 404
    assert checked[("POST", "/v1/participants/erase")] == 404
    assert checked[("POST", "/v1/audit/receipts/verify")] == 400
    assert asyncio.run(_captions_close(api_b, m)) == 4404
    assert set(checked) == set(secured)

    # Nothing B sent changed anything of A's.
    # (whether the room carries notices follows the room, not B: left out of the comparison)
    after = {k: v for k, v in api_a.ok("GET", f"/v1/meetings/{m}").items() if "notices" not in k}
    assert after == {k: v for k, v in before.items() if "notices" not in k}
    assert "flintwick" in words(api_a.transcript(m))
    assert api_a.ok("GET", f"/v1/meetings/{m}/bot")["state"] == "requested"
    assert api_a.ok("GET", "/v1/keys")["primary_version"] == keys_a["primary_version"]
    assert api_a.ok("GET", "/v1/tenant")["revoked"] is False
    assert api_a.ok("GET", "/v1/tokens") == tokens_a
    assert "Olive" in api_a.ok("GET", f"/v1/meetings/{m}")["opted_out"]
    assert [x["id"] for x in api_a.ok("GET", "/v1/meetings")].count(m) == 1
    assert m not in [x["id"] for x in api_b.ok("GET", "/v1/meetings")]
    api_a.ok("DELETE", f"/v1/meetings/{m}/bot")


def _unzipped(got: httpx.Response) -> bytes:
    with zipfile.ZipFile(io.BytesIO(got.content)) as zf:
        return b"\n".join(
            [n.encode() for n in zf.namelist()] + [zf.read(n) for n in zf.namelist()]
        ).lower()
