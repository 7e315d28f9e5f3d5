"""The ``KeyProvider`` protocol: where a tenant's key lives and what may be asked of it.

A provider holds the tenant's key (the key-encryption key, KEK) and never hands it out.
Callers ask it to wrap, unwrap or rewrap a *data* key under a :class:`KeyContext`, always
naming a :class:`Purpose`. Shipped implementations:

* :class:`keys.local.LocalKeyring`: key files on this host, mode 0600. Suits a customer who
  runs sealscribe on their own machine: whoever can read ``$SEALSCRIBE_HOME/keys`` holds
  the keys, so the operator and the customer must be the same party.
* A Transit provider (OpenBao / Vault) for customers whose keys stay in their own KMS.

Providers do not audit; :class:`keys.service.KeyService` audits every call uniformly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from keys.types import DataKey, KeyContext, KeyStatus, Purpose, WrappedKey

__all__ = ["KeyProvider"]


@runtime_checkable
class KeyProvider(Protocol):
    """A tenant key custodian. Every method raises :class:`keys.errors.KeyRevoked` once
    the tenant's key is revoked, and :class:`keys.errors.NotFound` for an unknown tenant."""

    name: str

    def health(self) -> None:
        """Raise :class:`keys.errors.KeyUnavailable` (or a :class:`KeyringError`) if this
        provider cannot serve keys right now; used by health checks."""
        ...

    def create(self, tenant_id: str) -> int:
        """Create the tenant's key (version 1) and return its primary version."""
        ...

    def wrap(
        self, tenant_id: str, key: DataKey, context: KeyContext, purpose: Purpose
    ) -> WrappedKey:
        """Encrypt a data key under the tenant's primary version, bound to ``context``."""
        ...

    def unwrap(
        self, tenant_id: str, wrapped: WrappedKey, context: KeyContext, purpose: Purpose
    ) -> DataKey:
        """Decrypt a wrapped data key; :class:`keys.errors.InvalidSeal` if it does not
        belong to ``context`` or was altered."""
        ...

    def rewrap(self, tenant_id: str, wrapped: WrappedKey, context: KeyContext) -> WrappedKey:
        """Re-encrypt a wrapped key under the primary version without revealing it."""
        ...

    def rotate(self, tenant_id: str) -> int:
        """Make a new primary version; return it. Older versions still unwrap."""
        ...

    def retire_below(self, tenant_id: str, version: int) -> None:
        """Make every version below ``version`` unusable (and destroy it where possible)."""
        ...

    def revoke(self, tenant_id: str) -> None:
        """Kill switch: nothing wrapped under this tenant's key can be unwrapped again."""
        ...

    def mac(self, tenant_id: str, data: bytes) -> str:
        """A MAC of ``data`` (``PROVIDER:vVERSION:BASE64``) with a key of the tenant's that
        opens no content: what makes the audit chain keyed (:mod:`keys.audit`)."""
        ...

    def check_macs(self, tenant_id: str, items: Sequence[tuple[bytes, str]]) -> list[bool | None]:
        """For each (data, mac): whether it is right; None where it cannot be checked
        (its version is retired, or another provider made it)."""
        ...

    def status(self, tenant_id: str) -> KeyStatus:
        """Versions and state, never key material."""
        ...
