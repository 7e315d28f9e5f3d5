"""LocalKeyring: file safety, versions, bring-your-own-key, retire and revoke."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from keys.errors import (
    InvalidKeyInput,
    InvalidSeal,
    KeyRevoked,
    KeyringCorrupt,
    KeyringPermissions,
    KeyUnavailable,
    UnknownKey,
)
from keys.local import LocalKeyring, parse_key_material
from keys.types import DataKey, KeyContext, KeyUse, Purpose

T = "t_acme"
CTX = KeyContext(T, "m_1", KeyUse.AUDIO)


@pytest.fixture
def ring(tmp_path: Path) -> LocalKeyring:
    kr = LocalKeyring(tmp_path / "keys")
    kr.create(T)
    return kr


def test_files_are_private_and_hold_no_data_keys(ring: LocalKeyring) -> None:
    path = ring.root / f"{T}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ring.root.stat().st_mode) == 0o700
    dek = DataKey.generate()
    ring.wrap(T, dek, CTX, Purpose.TRANSCRIBE)
    assert base64.b64encode(dek.material) not in path.read_bytes()
    assert not [p for p in ring.root.iterdir() if p.name.endswith(".tmp")]


def test_wrap_unwrap_is_bound_to_context(ring: LocalKeyring) -> None:
    dek = DataKey.generate()
    wrapped = ring.wrap(T, dek, CTX, Purpose.TRANSCRIBE)
    assert wrapped.version == 1 and wrapped.provider == "local"
    assert ring.unwrap(T, wrapped, CTX, Purpose.DELIVER) == dek
    for other in (KeyContext(T, "m_2", KeyUse.AUDIO), KeyContext(T, "m_1", KeyUse.TRANSCRIPT)):
        with pytest.raises(InvalidSeal):
            ring.unwrap(T, wrapped, other, Purpose.TRANSCRIBE)


def test_other_tenant_cannot_unwrap(ring: LocalKeyring) -> None:
    ring.create("t_other")
    wrapped = ring.wrap(T, DataKey.generate(), CTX, Purpose.TRANSCRIBE)
    with pytest.raises(ValueError, match="another tenant"):
        ring.unwrap("t_other", wrapped, CTX, Purpose.TRANSCRIBE)
    with pytest.raises(InvalidSeal):
        ring.unwrap(
            "t_other", wrapped, KeyContext("t_other", "m_1", KeyUse.AUDIO), Purpose.TRANSCRIBE
        )


def test_no_other_purpose_exists(ring: LocalKeyring) -> None:
    wrapped = ring.wrap(T, DataKey.generate(), CTX, Purpose.TRANSCRIBE)
    with pytest.raises(ValueError):
        ring.unwrap(T, wrapped, CTX, "training")  # type: ignore[arg-type]
    assert {p.value for p in Purpose} == {"transcribe", "verify", "deliver", "rewrap"}


def test_rotate_rewrap_retire(ring: LocalKeyring) -> None:
    dek = DataKey.generate()
    old = ring.wrap(T, dek, CTX, Purpose.TRANSCRIBE)
    assert ring.rotate(T) == 2
    new = ring.rewrap(T, old, CTX)
    assert new.version == 2
    ring.retire_below(T, 2)
    assert ring.unwrap(T, new, CTX, Purpose.DELIVER) == dek
    with pytest.raises(KeyUnavailable, match=r"version 1 .* retired"):
        ring.unwrap(T, old, CTX, Purpose.DELIVER)
    status = ring.status(T)
    assert (status.primary_version, status.min_version, status.versions) == (2, 2, (2,))
    with pytest.raises(InvalidKeyInput, match="from 1 to the primary"):
        ring.retire_below(T, 3)


def test_revoke_is_a_kill_switch(ring: LocalKeyring) -> None:
    wrapped = ring.wrap(T, DataKey.generate(), CTX, Purpose.TRANSCRIBE)
    ring.revoke(T)
    with pytest.raises(KeyRevoked):
        ring.unwrap(T, wrapped, CTX, Purpose.DELIVER)
    with pytest.raises(KeyRevoked):
        ring.rotate(T)
    assert b'"key": null' in (ring.root / f"{T}.json").read_bytes()
    assert ring.status(T).revoked


def test_import_accepts_raw_hex_and_base64(ring: LocalKeyring) -> None:
    material = os.urandom(32)
    assert parse_key_material(material) == material
    assert parse_key_material(material.hex().encode() + b"\n") == material
    assert parse_key_material(base64.b64encode(material)) == material
    assert ring.import_key(T, material.hex().encode()) == 2
    assert ring.status(T).primary_version == 2


@pytest.mark.parametrize("bad", [b"", b"short", b"z" * 64, os.urandom(31), os.urandom(33)])
def test_malformed_import_is_refused_without_echo(ring: LocalKeyring, bad: bytes) -> None:
    before = (ring.root / f"{T}.json").read_bytes()
    with pytest.raises(InvalidKeyInput, match="must be 32 bytes") as info:
        ring.import_key(T, bad)
    if bad:
        assert bad.hex() not in str(info.value)
    assert (ring.root / f"{T}.json").read_bytes() == before


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_open_permissions_are_refused(ring: LocalKeyring, mode: int) -> None:
    path = ring.root / f"{T}.json"
    path.chmod(mode)
    before = path.read_bytes()
    with pytest.raises(KeyringPermissions, match=f"has mode {mode:04o}.*chmod 600"):
        ring.rotate(T)
    with pytest.raises(KeyringPermissions):
        ring.status(T)
    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == mode


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"format": "other"}', "format is not"),
        (b'{"format": "sealscribe-keyring/1", "tenant": "t_acme"}', "missing or malformed"),
        (b'{"format": "sealscribe-keyring/1", "tenant": "t_zzz"}', "another tenant"),
    ],
)
def test_corrupt_keyring_is_refused_and_never_overwritten(
    ring: LocalKeyring, content: bytes, why: str
) -> None:
    path = ring.root / f"{T}.json"
    path.write_bytes(content)
    with pytest.raises(KeyringCorrupt, match=why):
        ring.rotate(T)
    with pytest.raises(KeyringCorrupt):
        ring.import_key(T, os.urandom(32))
    with pytest.raises(KeyringCorrupt):
        ring.create(T)
    assert path.read_bytes() == content


def test_unknown_tenant_and_bad_ids(ring: LocalKeyring) -> None:
    with pytest.raises(UnknownKey, match="t_nobody"):
        ring.status("t_nobody")
    with pytest.raises(InvalidKeyInput, match="tenant id"):
        ring.status("../etc/passwd")
