"""The key library's own errors, and nothing else (the application's errors live in
``pipeline/errors.py``, which also maps these to exit codes and HTTP statuses).

A leaf module: it imports nothing. Errors from cryptography and hvac are translated into
these where they occur.

::

    KeysError
    ├── InvalidSeal               sealed data failed to open (message-less, on purpose)
    ├── KeyUnavailable            the tenant's key cannot be used right now
    │   └── KeyRevoked            the tenant's key was revoked: fail closed, never retry
    ├── KeyringError              the local keyring on disk cannot be trusted
    │   ├── KeyringCorrupt        unreadable or malformed keyring file
    │   └── KeyringPermissions    keyring file readable by others than its owner
    ├── InvalidKeyInput           a malformed argument to the key library (precise message)
    ├── UnknownKey                a tenant the provider holds no key for
    └── KeyConflict               the key operation clashes with the keys' current state

Messages never contain key material or content.
"""

from __future__ import annotations

__all__ = [
    "InvalidKeyInput",
    "InvalidSeal",
    "KeyConflict",
    "KeyRevoked",
    "KeyUnavailable",
    "KeyringCorrupt",
    "KeyringError",
    "KeyringPermissions",
    "KeysError",
    "UnknownKey",
]


class KeysError(Exception):
    """Base class of every error the key library raises on purpose."""


class InvalidSeal(KeysError):
    """Sealed data did not open: tampered, truncated, extended, reordered, moved, or the
    wrong key or context. Carries no message, so it tells an attacker nothing."""

    def __init__(self) -> None:
        super().__init__()


class KeyUnavailable(KeysError):
    """The tenant's key cannot be used now (provider unreachable, version retired)."""


class KeyRevoked(KeyUnavailable):
    """The tenant's key was revoked. Work must fail closed and must not be retried."""


class KeyringError(KeysError):
    """The local keyring on disk cannot be used; it is left exactly as found."""


class KeyringCorrupt(KeyringError):
    """A keyring file is unreadable or malformed."""


class KeyringPermissions(KeyringError):
    """A keyring file can be read or written by users other than its owner."""


class InvalidKeyInput(KeysError, ValueError):
    """A malformed argument (wrapped key text, imported key, version, provider setting);
    the message says exactly what is wrong."""


class UnknownKey(KeysError):
    """The provider holds no key for this tenant."""


class KeyConflict(KeysError):
    """The key operation cannot be carried out in the keys' current state (data keys still
    wrapped below a version to retire; the audit log too busy to append to)."""
