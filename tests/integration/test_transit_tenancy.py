"""What the operator can still do with the Transit provider, against a real OpenBao.

PRIVACY.md, "What the operator can still do", rests on these tests:

* the single service AppRole of the default deploy (the policy in deploy/README.md) opens
  every tenant's data keys;
* a policy per tenant (deploy/openbao/tenant-policy.hcl, loaded here as shipped) and a
  credential per tenant confine the service to that tenant's key;
* an audit device the customer declares in their OpenBao's configuration logs every use of
  their key, and neither the service's credential nor a root token can remove it through
  the API.
"""

from __future__ import annotations

import base64
import json
import secrets
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hvac.exceptions
import pytest

from keys.errors import KeyUnavailable
from keys.transit import TransitConfig, TransitKeyProvider
from keys.types import DataKey, KeyContext, KeyUse, Purpose
from tests.harness.bao import BaoServer

ROOT = Path(__file__).resolve().parents[2]
TENANT_POLICY = ROOT / "deploy" / "openbao" / "tenant-policy.hcl"
DEPLOY_README = ROOT / "deploy" / "README.md"


def service_policy() -> str:
    """The single service policy the default deploy documents (deploy/README.md, "The role
    needs this policy"), read from there so the test follows the document."""
    text = DEPLOY_README.read_text()
    after = text.split("The role needs this policy", 1)[1]
    block = after.split("```hcl\n", 1)[1].split("```", 1)[0]
    policy = textwrap.dedent(block)
    assert 'path "transit/decrypt/sealscribe-*"' in policy
    return policy


def tenant_policy(tenant_id: str) -> str:
    """deploy/openbao/tenant-policy.hcl rendered for one tenant, as its comment says."""
    template = TENANT_POLICY.read_text()
    assert "{tenant}" in template
    return template.replace("{tenant}", tenant_id)


def new_tenant() -> str:
    return "t_" + secrets.token_hex(8)  # the form of sealscribe's tenant ids


def approle(bao: BaoServer, name: str, policy: str) -> TransitKeyProvider:
    """Load ``policy`` as ``name``, make an AppRole with it alone, and return a provider
    that logs in with that AppRole as the service would (``SEALSCRIBE_TRANSIT_ROLE_ID``,
    ``_SECRET_ID``)."""
    root = bao.client
    root.sys.create_or_update_policy(name=name, policy=policy)
    if "approle/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("approle")
    root.auth.approle.create_or_update_approle(name, token_policies=[name], token_ttl="10m")
    role_id = root.auth.approle.read_role_id(name)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(name)["data"]["secret_id"]
    return TransitKeyProvider(
        TransitConfig.from_env(
            {
                "SEALSCRIBE_TRANSIT_ADDR": bao.url,
                "SEALSCRIBE_TRANSIT_ROLE_ID": role_id,
                "SEALSCRIBE_TRANSIT_SECRET_ID": secret_id,
            }
        )
    )


def tenant_credential(bao: BaoServer, tenant_id: str) -> TransitKeyProvider:
    return approle(bao, f"sealscribe-{tenant_id}", tenant_policy(tenant_id))


def post(provider: TransitKeyProvider, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``{mount}/{path}`` with the provider's own login, its errors translated."""
    url = f"/v1/{provider.config.mount}/{path}"
    reply: dict[str, Any] = provider._call(lambda: provider.client.adapter.post(url, json=body))
    return reply


def hmac(provider: TransitKeyProvider, tenant_id: str, data: bytes, algorithm: str = "") -> str:
    """Transit ``hmac`` on the tenant's key: ``hmac/<key>``, or ``hmac/<key>/<algorithm>``."""
    path = f"hmac/sealscribe-{tenant_id}" + (f"/{algorithm}" if algorithm else "")
    reply = post(provider, path, {"input": base64.b64encode(data).decode()})
    digest: str = reply["data"]["hmac"]
    return digest


def verify(
    provider: TransitKeyProvider, tenant_id: str, data: bytes, digest: str, algorithm: str = ""
) -> bool:
    path = f"verify/sealscribe-{tenant_id}" + (f"/{algorithm}" if algorithm else "")
    body = {"input": base64.b64encode(data).decode(), "hmac": digest}
    return bool(post(provider, path, body)["data"]["valid"])


def round_trip(provider: TransitKeyProvider, tenant_id: str) -> None:
    ctx = KeyContext(tenant_id, "m_" + secrets.token_hex(8), KeyUse.AUDIO)
    key = DataKey.generate()
    wrapped = provider.wrap(tenant_id, key, ctx, Purpose.TRANSCRIBE)
    assert provider.unwrap(tenant_id, wrapped, ctx, Purpose.DELIVER) == key


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = BaoServer(tmp_path_factory.mktemp("bao"))
    yield server
    server.stop()


def test_the_default_service_approle_opens_every_tenants_data_keys(bao: BaoServer) -> None:
    """The operator power PRIVACY.md discloses: one credential, every tenant's key."""
    service = approle(bao, "sealscribe-service", service_policy())
    a, b = new_tenant(), new_tenant()
    for tenant_id in (a, b):
        assert service.create(tenant_id) == 1
        round_trip(service, tenant_id)
    # Keys it did not create (made by the customer in their KMS) open for it just the same.
    c = new_tenant()
    bao.client.secrets.transit.create_key(name=f"sealscribe-{c}", derived=True)
    round_trip(service, c)


def test_a_tenant_credential_opens_its_own_key_and_nothing_of_another_tenant(
    bao: BaoServer,
) -> None:
    a, b = new_tenant(), new_tenant()
    for_a, for_b = tenant_credential(bao, a), tenant_credential(bao, b)

    # Everything the provider does for A works with A's credential.
    assert for_a.create(a) == 1
    ctx = KeyContext(a, "m_1", KeyUse.TRANSCRIPT)
    key = DataKey.generate()
    wrapped = for_a.wrap(a, key, ctx, Purpose.TRANSCRIBE)
    assert for_a.unwrap(a, wrapped, ctx, Purpose.DELIVER) == key
    # hmac works on this derived aes256-gcm96 key (no context needed), with and without
    # the algorithm in the path; sha2-256 is the default.
    digest = hmac(for_a, a, b"participant-label", "sha2-256")
    assert digest.startswith("vault:v1:") and digest == hmac(for_a, a, b"participant-label")
    assert verify(for_a, a, b"participant-label", digest, "sha2-256")
    assert verify(for_a, a, b"participant-label", digest)
    assert not verify(for_a, a, b"another-label", digest, "sha2-256")
    assert for_a.rotate(a) == 2
    rewrapped = for_a.rewrap(a, wrapped, ctx)
    assert rewrapped.version == 2 and for_a.unwrap(a, rewrapped, ctx, Purpose.DELIVER) == key
    assert hmac(for_a, a, b"participant-label").startswith("vault:v2:")
    for_a.retire_below(a, 2)
    status = for_a.status(a)
    assert (status.primary_version, status.min_version, status.versions) == (2, 2, (2,))
    assert for_a.unwrap(a, rewrapped, ctx, Purpose.DELIVER) == key
    # A digest made under a retired version no longer verifies.
    with pytest.raises(KeyUnavailable, match="retired"):
        verify(for_a, a, b"participant-label", digest, "sha2-256")

    # B's key, made and used with B's own credential.
    assert for_b.create(b) == 1
    ctx_b = KeyContext(b, "m_2", KeyUse.AUDIO)
    key_b = DataKey.generate()
    wrapped_b = for_b.wrap(b, key_b, ctx_b, Purpose.TRANSCRIBE)

    # A's credential is refused every operation on B's key, and learns nothing of it.
    attempts: dict[str, Callable[[], object]] = {
        "create": lambda: for_a.create(b),
        "wrap": lambda: for_a.wrap(b, DataKey.generate(), ctx_b, Purpose.TRANSCRIBE),
        "unwrap": lambda: for_a.unwrap(b, wrapped_b, ctx_b, Purpose.DELIVER),
        "rewrap": lambda: for_a.rewrap(b, wrapped_b, ctx_b),
        "rotate": lambda: for_a.rotate(b),
        "status": lambda: for_a.status(b),
        "retire": lambda: for_a.retire_below(b, 1),
        "revoke": lambda: for_a.revoke(b),
        "hmac": lambda: hmac(for_a, b, b"participant-label"),
        "hmac/sha2-256": lambda: hmac(for_a, b, b"participant-label", "sha2-256"),
        "verify": lambda: verify(for_a, b, b"participant-label", digest, "sha2-256"),
        "list keys": lambda: for_a._call(
            lambda: for_a.client.secrets.transit.list_keys(mount_point="transit")
        ),
    }
    for what, attempt in attempts.items():
        with pytest.raises(KeyUnavailable, match="permission denied") as refused:
            attempt()
        assert b not in str(refused.value), what
    # A key whose name merely starts with A's is not A's: the policy names exact paths.
    longer = f"{a}0"
    bao.client.secrets.transit.create_key(name=f"sealscribe-{longer}", derived=True)
    with pytest.raises(KeyUnavailable, match="permission denied"):
        for_a.wrap(longer, key, KeyContext(longer, "m_1", KeyUse.AUDIO), Purpose.TRANSCRIBE)

    # B's key is untouched by all that: one version, and B's data key still opens.
    assert for_b.status(b).primary_version == 1
    assert for_b.unwrap(b, wrapped_b, ctx_b, Purpose.DELIVER) == key_b


def audit_entries(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_customers_audit_device_shows_every_use_of_their_key(tmp_path: Path) -> None:
    # The customer's own OpenBao, with a file audit device they declare in its configuration
    # (OpenBao refuses to create audit devices through the API) and load with SIGHUP.
    workdir = tmp_path / "kms"
    workdir.mkdir()
    kms = BaoServer(workdir)
    try:
        customer_log = tmp_path / "customer-audit.log"
        config = workdir / "bao.hcl"  # the server's configuration file (tests/harness/bao.py)
        config.write_text(
            config.read_text()
            + f'audit "file" "customer" {{\n  options {{\n    file_path = "{customer_log}"\n'
            + "  }\n}\n"
        )
        kms.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "customer/" not in kms.client.sys.list_enabled_audit_devices()["data"]:
            assert time.monotonic() < deadline, "the customer's audit device was not loaded"
            time.sleep(0.05)

        a, b = new_tenant(), new_tenant()
        for_a, for_b = tenant_credential(kms, a), tenant_credential(kms, b)
        for_a.create(a)
        for_b.create(b)
        contexts = [KeyContext(a, f"m_{n}", KeyUse.AUDIO) for n in range(3)]
        wrapped = [for_a.wrap(a, DataKey.generate(), c, Purpose.TRANSCRIBE) for c in contexts]
        for w, c in zip(wrapped, contexts, strict=True):
            for_a.unwrap(a, w, c, Purpose.TRANSCRIBE)
        for_a.rotate(a)
        for_a.rewrap(a, wrapped[0], contexts[0])
        hmac(for_a, a, b"participant-label")
        # B's credential tries A's key: refused, and logged for A's customer to see.
        with pytest.raises(KeyUnavailable, match="permission denied"):
            for_b.unwrap(a, wrapped[1], contexts[1], Purpose.DELIVER)

        name = f"sealscribe-{a}"
        requests = [
            e
            for e in audit_entries(customer_log)
            if e["type"] == "request"
            and e["request"]["path"].startswith("transit/")
            and name in e["request"]["path"].split("/")
        ]
        seen = [(e["request"]["operation"], e["request"]["path"]) for e in requests]
        assert sorted(seen) == sorted(
            [
                ("update", f"transit/keys/{name}"),  # create
                *[("read", f"transit/keys/{name}")] * 2,  # create and rotate read the version
                *[("update", f"transit/encrypt/{name}")] * 3,
                *[("update", f"transit/decrypt/{name}")] * 4,  # three unwraps, B's attempt
                ("update", f"transit/keys/{name}/rotate"),
                ("update", f"transit/rewrap/{name}"),
                ("update", f"transit/hmac/{name}"),
            ]
        )
        # Who did what: each entry names the policy that asked, and B's attempt was refused.
        decrypts = [e for e in requests if e["request"]["path"] == f"transit/decrypt/{name}"]
        by = [(e["auth"]["token_policies"], "error" in e) for e in decrypts]
        assert by == [(["default", f"sealscribe-{a}"], False)] * 3 + [
            (["default", f"sealscribe-{b}"], True)
        ]
        # Which meeting: the customer hashes a context with their device's key and finds it.
        wanted = base64.b64encode(contexts[2].encode()).decode()
        hashed = kms.client.sys.calculate_hash(path="customer", input_to_hash=wanted)
        assert [e["request"]["data"]["context"] for e in decrypts[:3]].count(
            hashed["data"]["hash"]
        ) == 1
        # The service's credential cannot see or remove the customer's device; nor, for a
        # device declared in the configuration, can a root token through the API.
        with pytest.raises(KeyUnavailable, match="permission denied"):
            for_a._call(lambda: for_a.client.sys.list_enabled_audit_devices())
        with pytest.raises(KeyUnavailable, match="permission denied"):
            for_a._call(lambda: for_a.client.sys.disable_audit_device("customer"))
        with pytest.raises(hvac.exceptions.InvalidRequest, match="configuration-managed"):
            kms.client.sys.disable_audit_device("customer")
        assert "customer/" in kms.client.sys.list_enabled_audit_devices()["data"]
    finally:
        kms.stop()
