"""The CLI as a user runs it, against real Redis: output, --json, and bad input that gives a
clear error and changes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from pipeline import services
from pipeline.cli import app
from pipeline.config import Settings
from pipeline.errors import AuthenticationFailed
from pipeline.runtime import Runtime
from pipeline.store import schema

runner = CliRunner()


def cli(*args: str, code: int = 0, stdin: bytes | None = None) -> str:
    result = runner.invoke(app, list(args), input=stdin)
    assert result.exit_code == code, result.output
    return result.output


def snapshot(
    r: redis.Redis, home: Path, audit: bool = True
) -> tuple[dict[bytes, bytes | None], dict[str, bytes]]:
    keys = {k: r.dump(k) for k in r.scan_iter("*") if audit or not k.startswith(b"ss:audit:")}
    files = {str(p): p.read_bytes() for p in home.rglob("*.json")}
    return keys, files


@pytest.fixture
def tenant(settings: Settings) -> str:
    out = json.loads(cli("tenant", "create", "Acme Corp", "--json"))
    assert out["token"].startswith("sst_")
    return str(out["tenant"]["id"])


def test_happy_path_with_json(tenant: str) -> None:
    meeting = json.loads(cli("meeting", "create", "--tenant", tenant, "--json"))
    assert meeting["transcription"] is False
    on = json.loads(cli("meeting", "transcription", meeting["id"], "on", "--json"))
    assert on["transcription"] is True
    assert "transcription ON" in cli("meeting", "show", meeting["id"])
    rotated = json.loads(cli("keys", "rotate", "--tenant", tenant, "--json"))
    assert rotated == {"primary_version": 2, "rewrapped": 2}
    assert json.loads(cli("keys", "retire", "--tenant", tenant, "--below", "2", "--json")) == {
        "retired_below": 2,
        "rewrapped": 0,
    }
    status = json.loads(cli("keys", "status", "--tenant", tenant, "--json"))
    assert status["status"]["versions"] == [2] and status["wrapped_by_version"] == {"2": 2}
    entries = json.loads(cli("audit", "show", "--tenant", tenant, "--json"))
    assert [e["action"] for e in entries][:3] == ["create", "wrap", "wrap"]
    assert "audit log intact" in cli("audit", "verify", "--tenant", tenant)
    assert "crypto-shredded" in cli("meeting", "delete", meeting["id"], "--yes")
    assert json.loads(cli("meeting", "list", "--tenant", tenant, "--json")) == []


def test_import_then_revoke(tenant: str, tmp_path: Path) -> None:
    cli("meeting", "create", "--tenant", tenant)
    keyfile = tmp_path / "customer.key"
    keyfile.write_bytes(os.urandom(32).hex().encode())
    out = json.loads(cli("keys", "import", "--tenant", tenant, "--file", str(keyfile), "--json"))
    assert out == {"primary_version": 2, "rewrapped": 2}
    cli("keys", "revoke", "--tenant", tenant, code=2)  # no --yes, no terminal: refused
    cli("keys", "revoke", "--tenant", tenant, "--yes")
    assert "REVOKED" in cli("keys", "status", "--tenant", tenant)
    err = json.loads(cli("keys", "rotate", "--tenant", tenant, "--json", code=6))
    assert err["error"]["type"] == "KeyRevoked"


def test_unknown_tenant_and_meeting_change_nothing(
    tenant: str, settings: Settings, redis_client: redis.Redis
) -> None:
    before = snapshot(redis_client, settings.home)
    assert "no tenant t_nope" in cli("meeting", "create", "--tenant", "t_nope", code=3)
    assert "no meeting m_nope" in cli("meeting", "transcription", "m_nope", "on", code=3)
    cli("meeting", "delete", "m_nope", "--yes", code=3)
    cli("keys", "rotate", "--tenant", "t_nope", code=3)
    cli("audit", "verify", "--tenant", "t_nope", code=3)
    err = json.loads(cli("meeting", "show", "m_nope", "--json", code=3))
    assert err == {"error": {"type": "NotFound", "message": "no meeting m_nope"}}
    assert snapshot(redis_client, settings.home) == before


def test_corrupt_keyring_is_refused_and_kept(
    tenant: str, settings: Settings, redis_client: redis.Redis
) -> None:
    path = settings.keyring_dir / f"{tenant}.json"
    path.write_bytes(
        b'{"format": "sealscribe-keyring/1", "tenant": "' + tenant.encode() + b'", "primary": 1}'
    )
    before = snapshot(redis_client, settings.home, audit=False)
    out = cli("keys", "rotate", "--tenant", tenant, code=5)
    assert "is corrupt" in out and str(path) in out
    cli("meeting", "create", "--tenant", tenant, code=5)
    assert snapshot(redis_client, settings.home, audit=False) == before
    # The refused key uses are themselves audited.
    outcomes = [e["outcome"] for e in json.loads(cli("audit", "show", "-t", tenant, "--json"))]
    assert outcomes[-2:] == ["KeyringCorrupt", "KeyringCorrupt"]


def test_world_readable_keyring_is_refused(
    tenant: str, settings: Settings, redis_client: redis.Redis
) -> None:
    path = settings.keyring_dir / f"{tenant}.json"
    path.chmod(0o644)
    before = snapshot(redis_client, settings.home, audit=False)
    out = cli("keys", "status", "--tenant", tenant, code=5)
    assert "mode 0644" in out and "chmod 600" in out
    cli("meeting", "create", "--tenant", tenant, code=5)
    assert snapshot(redis_client, settings.home, audit=False) == before


def test_malformed_import_changes_nothing(
    tenant: str, settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    cli("meeting", "create", "--tenant", tenant)
    before = snapshot(redis_client, settings.home)
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"this is not a key")
    out = cli("keys", "import", "--tenant", tenant, "--file", str(bad), code=2)
    assert "must be 32 bytes" in out and "this is not a key" not in out
    assert "does not exist" in cli(
        "keys", "import", "--tenant", tenant, "--file", str(tmp_path / "missing"), code=2
    )
    cli("keys", "import", "--tenant", tenant, "--file", "-", stdin=b"", code=2)
    assert snapshot(redis_client, settings.home) == before


def test_wrong_token_is_refused(rt: Runtime, redis_client: redis.Redis, settings: Settings) -> None:
    services.create_tenant(rt, "Acme")
    before = snapshot(redis_client, settings.home)
    for token in ("sst_" + "A" * 43, "nonsense", ""):
        with pytest.raises(AuthenticationFailed):
            services.authenticate(rt, token)
    assert snapshot(redis_client, settings.home) == before


def test_tampered_audit_exits_nonzero(tenant: str, redis_client: redis.Redis) -> None:
    redis_client.lset(schema.audit(tenant), 0, '{"seq": 0}')
    out = cli("audit", "verify", "--tenant", tenant, code=1)
    assert "tampered" in out


def test_bad_configuration_is_explained(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.config import get_settings

    monkeypatch.setenv("SEALSCRIBE_KEY_PROVIDER", "vaultish")
    get_settings.cache_clear()
    assert "SEALSCRIBE_KEY_PROVIDER must be one of local" in cli("tenant", "list", code=2)


def test_privacy_report(tenant: str, redis_client: redis.Redis) -> None:
    meeting = json.loads(cli("meeting", "create", "--tenant", tenant, "--json"))["id"]
    cli("meeting", "transcription", meeting, "on")
    cli("meeting", "transcription", meeting, "off")
    report = json.loads(cli("meeting", "privacy", meeting, "--json"))
    assert [s[1] for s in report["switches"]] == ["on", "off"]
    assert report["transcription_now"] is False and report["audit_intact"] is True
    assert report["key_uses"] == {} and report["purged"] == {}
    assert "switched on by" in cli("meeting", "privacy", meeting)
    redis_client.lset(schema.audit(tenant), 1, '{"seq": 1}')
    assert json.loads(cli("meeting", "privacy", meeting, "--json"))["audit_intact"] is False
