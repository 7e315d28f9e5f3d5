"""Tokens with scopes, and the limit on failed authentications, against a real ``sealscribe
serve`` (and the real CLI) on loopback with a private redis-server.

A tenant holds several named tokens, each with scopes (``admin`` holds all; ``meetings``;
``read``) and an optional expiry, stored only as SHA-256; every route declares the scope it
needs, and a valid token without it gets 403 ``insufficient-scope``. A client address that
keeps presenting bad tokens is refused with 429 and ``Retry-After``, whatever it presents.

Faults (``tests/security/test_mutations.py``): ``token-scopes-ignored`` (every token may do
everything) and ``auth-failures-unlimited`` (failures are not counted).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.models import Scope
from pipeline.store import schema
from tests.harness.processes import sealscribe
from tests.harness.stack import T
from tests.security.captions import close_code, everything
from tests.security.tenant_stack import TenantStack, tenant_stack

pytestmark = pytest.mark.timeout(300)

#: what a ``read`` and a ``meetings`` token may call (``admin`` may call everything); the
#: order puts what would do harm, were the rule broken, last
SCOPES: list[tuple[str, str, frozenset[str]]] = [
    ("GET", "/v1/tenant", frozenset({"read", "meetings"})),
    ("PUT", "/v1/tenant/retention", frozenset()),
    ("GET", "/v1/tenant/export", frozenset()),
    ("GET", "/v1/tenant/announcements", frozenset({"read", "meetings"})),
    ("PUT", "/v1/tenant/announcements/{kind}", frozenset()),
    ("GET", "/v1/keys", frozenset()),
    ("GET", "/v1/audit", frozenset()),
    ("GET", "/v1/audit/verify", frozenset()),
    ("POST", "/v1/audit/verify", frozenset()),
    ("GET", "/v1/audit/head", frozenset()),
    ("POST", "/v1/audit/receipts/verify", frozenset()),
    ("GET", "/v1/tokens", frozenset()),
    ("POST", "/v1/tokens", frozenset()),
    ("POST", "/v1/tokens/{token_id}/rotate", frozenset()),
    ("DELETE", "/v1/tokens/{token_id}", frozenset()),
    ("GET", "/v1/webhooks", frozenset()),
    ("POST", "/v1/webhooks", frozenset()),
    ("GET", "/v1/webhooks/{endpoint_id}", frozenset()),
    ("DELETE", "/v1/webhooks/{endpoint_id}", frozenset()),
    ("POST", "/v1/webhooks/{endpoint_id}/rotate-secret", frozenset()),
    ("GET", "/v1/webhooks/{endpoint_id}/log", frozenset()),
    ("POST", "/v1/webhooks/{endpoint_id}/replay", frozenset()),
    ("GET", "/v1/meetings", frozenset({"read", "meetings"})),
    ("POST", "/v1/meetings", frozenset({"meetings"})),
    ("GET", "/v1/meetings/{meeting_id}", frozenset({"read", "meetings"})),
    ("GET", "/v1/meetings/{meeting_id}/transcript", frozenset({"read"})),
    ("GET", "/v1/meetings/{meeting_id}/privacy", frozenset({"read"})),
    ("GET", "/v1/meetings/{meeting_id}/verify", frozenset({"read"})),
    ("POST", "/v1/meetings/{meeting_id}/captions/ticket", frozenset({"read", "meetings"})),
    ("PUT", "/v1/meetings/{meeting_id}/transcription", frozenset({"meetings"})),
    (
        "PUT",
        "/v1/meetings/{meeting_id}/participants/{participant}/consent",
        frozenset({"meetings"}),
    ),
    (
        "PUT",
        "/v1/meetings/{meeting_id}/participants/{participant}/subject",
        frozenset({"meetings"}),
    ),
    ("PUT", "/v1/meetings/{meeting_id}/consent-mode", frozenset({"meetings"})),
    (
        "POST",
        "/v1/meetings/{meeting_id}/participants/{participant}/link",
        frozenset({"meetings"}),
    ),
    ("POST", "/v1/meetings/{meeting_id}/bot", frozenset({"meetings"})),
    ("GET", "/v1/meetings/{meeting_id}/bot", frozenset({"read", "meetings"})),
    ("DELETE", "/v1/meetings/{meeting_id}/bot", frozenset({"meetings"})),
    ("POST", "/v1/meetings/{meeting_id}/whip", frozenset({"meetings"})),
    ("PATCH", "/v1/meetings/{meeting_id}/whip/{session_id}", frozenset({"meetings"})),
    ("DELETE", "/v1/meetings/{meeting_id}/whip/{session_id}", frozenset({"meetings"})),
    ("POST", "/v1/keys/rotate", frozenset()),
    ("POST", "/v1/keys/retire", frozenset()),
    ("DELETE", "/v1/meetings/{meeting_id}", frozenset()),
    ("POST", "/v1/participants/erase", frozenset()),
    ("POST", "/v1/keys/revoke", frozenset()),
]


def cli_json(stack: TenantStack, *args: str) -> Any:
    """``sealscribe ARGS --json`` with the stack's settings: its JSON (stdout only: an
    injected fault's warning goes to stderr)."""
    done = subprocess.run(
        [*sealscribe(*args), "--json"],
        env={**stack.env, "TMPDIR": str(stack.root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[TenantStack]:
    # no request-rate quota here: this suite is about tokens (test_quotas.py has that)
    with tenant_stack(tmp_path, SEALSCRIBE_QUOTA_RPS="0", SEALSCRIBE_AUTH_FAILURES="5") as s:
        yield s


def token(stack: TenantStack, admin: T, name: str, *scopes: str, **extra: Any) -> dict[str, Any]:
    with stack.http(admin) as http:
        r = http.post("/v1/tokens", json={"name": name, "scopes": list(scopes), **extra})
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


def request_for(
    method: str, template: str, tenant: T, meeting_id: str, token_id: str
) -> dict[str, Any]:
    bodies: dict[tuple[str, str], Any] = {
        ("PUT", "/v1/tenant/retention"): {"transcript_ttl": 3600},
        ("POST", "/v1/tokens"): {"name": "more", "scopes": ["read"]},
        ("POST", "/v1/webhooks"): {"url": "http://127.0.0.1:9/x"},
        ("POST", "/v1/webhooks/{endpoint_id}/replay"): {},
        ("POST", "/v1/meetings"): {},
        ("PUT", "/v1/meetings/{meeting_id}/transcription"): {"enabled": False},
        ("PUT", "/v1/meetings/{meeting_id}/participants/{participant}/consent"): {
            "transcribe": False
        },
        ("POST", "/v1/meetings/{meeting_id}/bot"): {"url": "janus://127.0.0.1:8088/999"},
        ("POST", "/v1/keys/retire"): {"below": 1},
        ("POST", "/v1/keys/revoke"): {"confirm": f"revoke {tenant.id}"},
        ("PUT", "/v1/meetings/{meeting_id}/participants/{participant}/subject"): {
            "subject": "crm-1"
        },
        ("POST", "/v1/audit/verify"): {},
        ("PUT", "/v1/meetings/{meeting_id}/consent-mode"): {"mode": "notice"},
        ("POST", "/v1/meetings/{meeting_id}/participants/{participant}/link"): {},
        ("POST", "/v1/participants/erase"): {"name": "alice", "confirm": "erase"},
        ("POST", "/v1/audit/receipts/verify"): {
            "tenant": tenant.id,
            "subject": "name:alice",
            "erased_at": 0,
            "meetings": [],
            "key_version": None,
            "audit_head": None,
            "mac": "",
        },
    }
    url = template.format(
        meeting_id=meeting_id,
        participant="alice",
        session_id="w_" + "0" * 16,
        token_id=token_id,
        endpoint_id="wh_" + "0" * 16,
        kind="join",
    )
    kwargs: dict[str, Any] = {"method": method, "url": url}
    if (method, template) in bodies:
        kwargs["json"] = bodies[(method, template)]
    elif template.endswith("/whip"):
        kwargs["content"] = "v=0\r\n"
        kwargs["headers"] = {"Content-Type": "application/sdp"}
    return kwargs


def test_every_route_needs_its_scope(stack: TenantStack) -> None:
    """A read token and a meetings token against every /v1 operation: 403
    insufficient-scope exactly where the table says, and never 401 (the token is valid)."""
    with httpx.Client(base_url=stack.api.url) as http:
        doc = http.get("/openapi.json").json()
    operations = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        if path.startswith("/v1/")
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    }
    assert operations == {(m, p) for m, p, _ in SCOPES}, "a route's scope is not in the table"

    admin = stack.tenant("scoped")
    first = stack.rt.store.tokens.list(admin.id)[0]
    with stack.http(admin) as http:
        m = http.post("/v1/meetings", json={}).json()["id"]
    kinds = {kind: token(stack, admin, kind, kind)["token"] for kind in ("read", "meetings")}
    for method, template, allowed in SCOPES:
        for kind, secret in kinds.items():
            with stack.http(T(admin.id, secret)) as http:
                r = http.request(**request_for(method, template, admin, m, first.id))
            where = f"{method} {template} with a {kind} token"
            if kind in allowed:
                assert r.status_code not in (401, 403), (where, r.status_code, r.text)
                continue
            assert r.status_code == 403, (where, r.status_code, r.text)
            assert r.json()["type"].endswith("/insufficient-scope"), (where, r.text)
            assert r.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
            assert secret not in r.text
    # and nothing that needs admin happened: the key is live, retention untouched
    with stack.http(admin) as http:
        assert http.get("/v1/keys").json()["revoked"] is False
        assert http.get("/v1/tenant").json()["retention"]["transcript_ttl"] != 3600


def test_named_tokens_from_the_cli_are_scoped_rotated_revoked_and_expire(
    stack: TenantStack,
) -> None:
    admin = stack.tenant("acme")
    made = cli_json(stack, "token", "create", "ci", "--tenant", admin.id, "-s", "meetings")
    ci = T(admin.id, made["token"])
    assert made["scopes"] == ["meetings"] and made["expires"] is None
    with stack.http(ci) as http:
        assert http.post("/v1/meetings", json={}).status_code == 201
        assert http.get("/v1/keys").status_code == 403  # meetings is not admin

    listed = cli_json(stack, "token", "list", "--tenant", admin.id)
    out = json.dumps(listed)
    assert [(t["name"], t["scopes"]) for t in listed] == [
        ("initial", ["admin"]),
        ("ci", ["meetings"]),
    ]
    assert admin.token not in out and ci.token not in out and "digest" not in out

    rotated = T(
        admin.id, cli_json(stack, "token", "rotate", made["id"], "--tenant", admin.id)["token"]
    )
    with stack.http(ci) as http:
        assert http.get("/v1/meetings").status_code == 401  # the old secret is dead
    with stack.http(rotated) as http:
        assert http.get("/v1/meetings").status_code == 200

    code, out = stack.cli("token", "revoke", made["id"], "--tenant", admin.id)
    assert code == 0, out
    with stack.http(rotated) as http:
        assert http.get("/v1/meetings").status_code == 401

    # the last admin token stays, from the CLI and from the API alike
    initial = listed[0]["id"]
    code, out = stack.cli("token", "revoke", initial, "--tenant", admin.id)
    assert code == 8 and "last admin token" in out, (code, out)
    with stack.http(admin) as http:
        assert http.delete(f"/v1/tokens/{initial}").status_code == 409
        assert http.get("/v1/tenant").status_code == 200
        # with a second admin token the first can go
        second = http.post("/v1/tokens", json={"name": "ops", "scopes": ["admin"]}).json()
        assert http.delete(f"/v1/tokens/{initial}").status_code == 204
    first_admin, admin = admin, T(admin.id, second["token"])
    with stack.http(admin) as http:
        assert http.get("/v1/keys").status_code == 200
    with stack.http(first_admin) as http:
        assert http.get("/v1/keys").status_code == 401

    # an expired token is refused
    _, stale = stack.rt.store.tokens.create(
        admin.id, "stale", {Scope.READ}, lifetime=60, now=time.time() - 61
    )
    with stack.http(T(admin.id, stale)) as http:
        assert http.get("/v1/tenant").status_code == 401
    short = token(stack, admin, "short", "read", expires_in=60)
    assert 59 <= short["expires"] - short["created"] <= 60
    ttl = stack.rt.store.redis.pttl(schema.token(short["token"]))
    assert 0 < ttl <= 60_000, ttl  # Redis forgets it by itself

    # only hashes: no token is in any key or value
    secrets_ = [first_admin.token, admin.token, ci.token, rotated.token, stale, short["token"]]
    for key, value in everything(stack.rt.store.redis):
        assert not any(s.encode() in key + value for s in secrets_), key


def test_a_tenant_from_before_named_tokens_keeps_its_token_as_admin(stack: TenantStack) -> None:
    """A tenant whose only token is recorded the old way (``token_key`` in its hash) keeps
    working, as an admin token named "initial", migrated on first use."""
    t = stack.tenant("old")
    r = stack.rt.store.redis
    r.delete(schema.tenant_tokens(t.id))
    r.hset(schema.tenant(t.id), "token_key", schema.token(t.token))
    with stack.http(t) as http:
        assert http.get("/v1/keys").status_code == 200  # admin
        listed = http.get("/v1/tokens").json()
    assert [(x["name"], x["scopes"]) for x in listed] == [("initial", ["admin"])]
    assert r.hget(schema.tenant(t.id), "token_key") is None
    assert r.hlen(schema.tenant_tokens(t.id)) == 1


def test_failed_authentications_are_limited_per_address(stack: TenantStack) -> None:
    """SEALSCRIBE_AUTH_FAILURES=5: the sixth bad token from 127.0.0.1 in a minute, and
    anything after it (a valid token too, a caption socket, a forged X-Forwarded-For), gets
    429 with Retry-After; 127.0.0.2 is still served."""
    t = stack.tenant("target")
    guesses = [f"sst_{i:043d}" for i in range(5)]
    with httpx.Client(base_url=stack.api.url) as http:
        for guess in guesses:
            r = http.get("/v1/tenant", headers={"Authorization": f"Bearer {guess}"})
            assert r.status_code == 401, r.text
        for headers in (
            {"Authorization": "Bearer sst_" + "9" * 43},
            {"Authorization": f"Bearer {t.token}"},
            {"Authorization": f"Bearer {t.token}", "X-Forwarded-For": "192.0.2.7"},
        ):
            r = http.get("/v1/tenant", headers=headers)
            assert r.status_code == 429, (headers.keys(), r.status_code, r.text)
            assert 1 <= int(r.headers["retry-after"]) <= 60
            assert r.json()["type"].endswith("/quota-exceeded")
            assert t.token not in r.text
    # another address is someone else
    other = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=stack.api.url, transport=other) as http:
        r = http.get("/v1/tenant", headers={"Authorization": f"Bearer {t.token}"})
        assert r.status_code == 200, r.text
    # the caption socket counts the same way
    url = stack.api.url.replace("http", "ws", 1) + "/v1/meetings/m_" + "0" * 16 + "/captions"
    assert close_code(url, headers={"Authorization": f"Bearer {t.token}"}) == 4429
    counted = stack.rt.store.redis.get(schema.auth_failures("127.0.0.1"))
    assert counted is not None and int(counted) == 5  # refused tries are not failures
