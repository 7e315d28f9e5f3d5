"""``LocalKeyring``: tenant keys in files on this host (the default provider).

Trust model: whoever can read ``$SEALSCRIBE_HOME/keys`` holds every tenant's key, so this
provider suits a customer running sealscribe on a machine they control. Customers who must
keep keys away from the operator use a KMS provider instead.

One JSON file per tenant, ``<root>/<tenant_id>.json``, mode 0600, written atomically (temp
file in the same directory, fsync, rename, fsync of the directory) under an exclusive lock.
A file that is malformed or readable by other users is refused with a clear error and is
never overwritten. Retiring a version deletes its material from the file; revoking deletes
all of it, so both are irreversible here. Beside the versions the file keeps one MAC key for
the tenant's audit chain (``keys.audit``), which opens no content and survives revocation.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import re
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keys import _primitives
from keys.errors import (
    InvalidKeyInput,
    KeyRevoked,
    KeyringCorrupt,
    KeyringPermissions,
    KeyUnavailable,
    UnknownKey,
)
from keys.types import DataKey, KeyContext, KeyStatus, Purpose, WrappedKey, encode_fields

__all__ = ["LocalKeyring", "parse_key_material"]

_FORMAT = "sealscribe-keyring/1"
_TENANT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def parse_key_material(data: bytes) -> bytes:
    """Accept a customer-supplied 256-bit key as 32 raw bytes, 64 hex digits or base64.

    Raises :class:`InvalidKeyInput` (never echoing the input) for anything else."""
    if len(data) == _primitives.KEY_SIZE:
        return data
    text = data.strip()
    with contextlib.suppress(ValueError):
        if len(text) == 2 * _primitives.KEY_SIZE:
            return bytes.fromhex(text.decode("ascii"))
    with contextlib.suppress(binascii.Error, ValueError):
        raw = base64.b64decode(text, validate=True)
        if len(raw) == _primitives.KEY_SIZE:
            return raw
    raise InvalidKeyInput(
        f"an imported key must be {_primitives.KEY_SIZE} bytes: raw, as "
        f"{2 * _primitives.KEY_SIZE} hex digits, or base64; got {len(data)} bytes "
        "that are none of these"
    )


@dataclass
class _Version:
    version: int
    material: bytes | None  # None once retired
    created: float
    source: str  # "generated" or "imported"


@dataclass
class _Ring:
    tenant_id: str
    primary: int
    min_version: int
    revoked: bool
    versions: dict[int, _Version] = field(default_factory=dict)
    #: the audit chain's MAC key: apart from the KEK versions, never rotated, kept after a
    #: revocation (it opens no content) so the chain stays checkable; None in keyrings from
    #: before keyed audit, until the first MAC makes one
    mac_key: bytes | None = None

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": _FORMAT,
                "tenant": self.tenant_id,
                "primary": self.primary,
                "min_version": self.min_version,
                "revoked": self.revoked,
                "mac_key": None
                if self.mac_key is None
                else base64.b64encode(self.mac_key).decode(),
                "versions": [
                    {
                        "version": v.version,
                        "key": None
                        if v.material is None
                        else base64.b64encode(v.material).decode(),
                        "created": v.created,
                        "source": v.source,
                    }
                    for v in sorted(self.versions.values(), key=lambda v: v.version)
                ],
            },
            indent=1,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: Path, tenant_id: str) -> _Ring:
        def bad(what: str) -> KeyringCorrupt:
            return KeyringCorrupt(f"keyring file {where} is corrupt: {what}")

        try:
            doc: Any = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise bad("not valid JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise bad(f"format is not {_FORMAT!r}")
        if doc.get("tenant") != tenant_id:
            raise bad("it belongs to another tenant")
        try:
            ring = cls(
                tenant_id, int(doc["primary"]), int(doc["min_version"]), bool(doc["revoked"])
            )
            for item in doc["versions"]:
                key = item["key"]
                material = None if key is None else base64.b64decode(key, validate=True)
                if material is not None and len(material) != _primitives.KEY_SIZE:
                    raise bad(f"version {item['version']} has a key of the wrong length")
                v = _Version(
                    int(item["version"]), material, float(item["created"]), str(item["source"])
                )
                ring.versions[v.version] = v
            mac_key = doc.get("mac_key")
            if mac_key is not None:
                ring.mac_key = base64.b64decode(mac_key, validate=True)
                if len(ring.mac_key) != _primitives.KEY_SIZE:
                    raise bad("the MAC key has the wrong length")
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            if isinstance(exc, KeyringCorrupt):
                raise
            raise bad("a required field is missing or malformed") from None
        if not ring.revoked and ring.primary not in ring.versions:
            raise bad("the primary version is missing")
        if not ring.revoked and ring.versions[ring.primary].material is None:
            raise bad("the primary version has no key material")
        return ring


class LocalKeyring:
    """Versioned per-tenant keys in ``root`` (normally ``$SEALSCRIBE_HOME/keys``).

    Args:
      root: directory for the keyring files; created with mode 0700 if absent.
      clock: returns the current time; tests pass their own.
    """

    name = "local"

    def __init__(self, root: Path, clock: Any = time.time) -> None:
        self.root = Path(root)
        self._clock = clock

    def health(self) -> None:
        if self.root.exists():
            if not self.root.is_dir():
                raise KeyringCorrupt(f"the keyring path {self.root} is not a directory")
            if self.root.stat().st_mode & 0o077:
                raise KeyringPermissions(
                    f"the keyring directory {self.root} is open to "
                    "other users; it must be mode 0700"
                )

    # -- files -------------------------------------------------------------------------

    def _path(self, tenant_id: str) -> Path:
        if not isinstance(tenant_id, str) or not _TENANT_RE.match(tenant_id):
            raise InvalidKeyInput("tenant id must be 1-64 letters, digits, '_' or '-'")
        return self.root / f"{tenant_id}.json"

    def _read(self, tenant_id: str) -> _Ring:
        path = self._path(tenant_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise UnknownKey(f"tenant {tenant_id} has no key in the local keyring") from None
        except OSError as exc:
            raise KeyringCorrupt(f"keyring file {path} cannot be opened: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise KeyringCorrupt(f"keyring file {path} is not a regular file")
            if st.st_mode & 0o077:
                raise KeyringPermissions(
                    f"keyring file {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must "
                    f"be readable by its owner only (chmod 600 {path})"
                )
            if st.st_uid != os.geteuid():
                raise KeyringPermissions(f"keyring file {path} is owned by another user")
            raw = fh.read()
        return _Ring.from_json(raw, path, tenant_id)

    def _write(self, ring: _Ring) -> None:
        path = self._path(ring.tenant_id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(ring.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        dfd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @contextlib.contextmanager
    def _locked(self, tenant_id: str) -> Iterator[None]:
        self._path(tenant_id)  # validates the id before it names a file
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.root / f".{tenant_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _usable(self, tenant_id: str) -> _Ring:
        ring = self._read(tenant_id)
        if ring.revoked:
            raise KeyRevoked(f"the key of tenant {tenant_id} was revoked")
        return ring

    def _new_version(self, ring: _Ring, material: bytes, source: str) -> int:
        version = max(ring.versions, default=0) + 1
        ring.versions[version] = _Version(version, material, float(self._clock()), source)
        ring.primary = version
        return version

    # -- KeyProvider -------------------------------------------------------------------

    def create(self, tenant_id: str) -> int:
        with self._locked(tenant_id):
            if self._path(tenant_id).exists():
                return self._usable(tenant_id).primary
            ring = _Ring(tenant_id, 0, 1, False, mac_key=_primitives.random_key())
            version = self._new_version(ring, _primitives.random_key(), "generated")
            self._write(ring)
            return version

    @staticmethod
    def _aad(tenant_id: str, version: int, context: KeyContext) -> bytes:
        if context.tenant_id != tenant_id:
            raise ValueError("the key context names another tenant")
        return encode_fields(b"sealscribe.wrap.local.v1", tenant_id, version) + context.encode()

    def wrap(
        self, tenant_id: str, key: DataKey, context: KeyContext, purpose: Purpose
    ) -> WrappedKey:
        Purpose(purpose)
        ring = self._usable(tenant_id)
        kek = ring.versions[ring.primary].material
        assert kek is not None
        blob = _primitives.gcm_wrap(kek, self._aad(tenant_id, ring.primary, context), key.material)
        return WrappedKey(self.name, ring.primary, blob)

    def unwrap(
        self, tenant_id: str, wrapped: WrappedKey, context: KeyContext, purpose: Purpose
    ) -> DataKey:
        Purpose(purpose)
        ring = self._usable(tenant_id)
        if wrapped.provider != self.name:
            raise KeyUnavailable(f"this data key is wrapped by provider {wrapped.provider!r}")
        version = ring.versions.get(wrapped.version)
        if version is None or version.material is None or wrapped.version < ring.min_version:
            raise KeyUnavailable(
                f"key version {wrapped.version} of tenant {tenant_id} is retired or unknown"
            )
        aad = self._aad(tenant_id, wrapped.version, context)
        return DataKey(_primitives.gcm_unwrap(version.material, aad, wrapped.ciphertext))

    def rewrap(self, tenant_id: str, wrapped: WrappedKey, context: KeyContext) -> WrappedKey:
        key = self.unwrap(tenant_id, wrapped, context, Purpose.REWRAP)
        return self.wrap(tenant_id, key, context, Purpose.REWRAP)

    # -- audit MACs (keys.audit.Authenticator) -------------------------------------------

    def _mac_key(self, tenant_id: str) -> bytes:
        ring = self._read(tenant_id)
        if ring.mac_key is not None:
            return ring.mac_key
        with self._locked(tenant_id):  # a keyring from before keyed audit gets one now
            ring = self._read(tenant_id)
            if ring.mac_key is None:
                ring.mac_key = _primitives.random_key()
                self._write(ring)
            return ring.mac_key

    def mac(self, tenant_id: str, data: bytes) -> str:
        tag = _primitives.hmac_sha256(self._mac_key(tenant_id), data)
        return f"{self.name}:v1:{base64.b64encode(tag).decode()}"

    def check_macs(self, tenant_id: str, items: Sequence[tuple[bytes, str]]) -> list[bool | None]:
        key = self._read(tenant_id).mac_key
        out: list[bool | None] = []
        for data, mac in items:
            provider, _, rest = mac.partition(":")
            if provider != self.name:
                out.append(None)
                continue
            version, _, encoded = rest.partition(":")
            try:
                tag = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                out.append(False)
                continue
            out.append(
                key is not None
                and version == "v1"
                and _primitives.equal(tag, _primitives.hmac_sha256(key, data))
            )
        return out

    def rotate(self, tenant_id: str) -> int:
        with self._locked(tenant_id):
            ring = self._usable(tenant_id)
            version = self._new_version(ring, _primitives.random_key(), "generated")
            self._write(ring)
            return version

    def import_key(self, tenant_id: str, material: bytes) -> int:
        """Bring your own key: ``material`` becomes the new primary version."""
        material = parse_key_material(material)
        with self._locked(tenant_id):
            ring = self._usable(tenant_id)
            version = self._new_version(ring, material, "imported")
            self._write(ring)
            return version

    def retire_below(self, tenant_id: str, version: int) -> None:
        with self._locked(tenant_id):
            ring = self._usable(tenant_id)
            if not 1 <= version <= ring.primary:
                raise InvalidKeyInput(
                    f"can only retire below a version from 1 to the primary ({ring.primary})"
                )
            for v in ring.versions.values():
                if v.version < version:
                    v.material = None
            ring.min_version = max(ring.min_version, version)
            self._write(ring)

    def revoke(self, tenant_id: str) -> None:
        with self._locked(tenant_id):
            ring = self._read(tenant_id)
            for v in ring.versions.values():
                v.material = None
            ring.revoked = True
            self._write(ring)

    def status(self, tenant_id: str) -> KeyStatus:
        ring = self._read(tenant_id)
        live = tuple(sorted(v.version for v in ring.versions.values() if v.material is not None))
        return KeyStatus(
            tenant_id=tenant_id,
            provider=self.name,
            primary_version=ring.primary,
            min_version=ring.min_version,
            versions=live,
            revoked=ring.revoked,
            details={"path": str(self._path(tenant_id))},
        )

    def delete(self, tenant_id: str) -> None:
        """Remove the tenant's keyring file (after :meth:`revoke`, for tenant erasure)."""
        with self._locked(tenant_id):
            self._path(tenant_id).unlink(missing_ok=True)
