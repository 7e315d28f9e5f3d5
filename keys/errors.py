"""The one exception tree of sealscribe.

This is a leaf module: it imports nothing, so every layer (``keys``, ``pipeline``,
``workers``) can raise and catch the same types. It lives in ``keys/`` because that is the
bottom layer, which may import nothing from the others. Errors from redis, cryptography,
PyAV or hvac are translated into these at the boundary where they occur; the API and the
CLI map these types to HTTP status codes and exit codes in one place each.

::

    SealscribeError
    ├── InvalidSeal               sealed data failed to open (message-less, on purpose)
    ├── KeyUnavailable            the tenant's key cannot be used right now
    │   └── KeyRevoked            the tenant's key was revoked: fail closed, never retry
    ├── KeyringError              the local keyring on disk cannot be trusted
    │   ├── KeyringCorrupt        unreadable or malformed keyring file
    │   └── KeyringPermissions    keyring file readable by others than its owner
    ├── InvalidInput              caller supplied something malformed (precise message)
    ├── NotFound                  unknown tenant, meeting, participant, segment
    ├── AuthenticationFailed      unknown or malformed API token
    ├── Conflict                  the request clashes with the current state
    └── StoreUnavailable          Redis (or another store) could not be reached

Messages never contain audio, transcript text, tokens or key material.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "Conflict",
    "InvalidInput",
    "InvalidSeal",
    "KeyRevoked",
    "KeyUnavailable",
    "KeyringCorrupt",
    "KeyringError",
    "KeyringPermissions",
    "NotFound",
    "SealscribeError",
    "StoreUnavailable",
]


class SealscribeError(Exception):
    """Base class of every error sealscribe raises on purpose."""


class InvalidSeal(SealscribeError):
    """Sealed data did not open: tampered, truncated, extended, reordered, moved, or the
    wrong key or context. Carries no message, so it tells an attacker nothing."""

    def __init__(self) -> None:
        super().__init__()


class KeyUnavailable(SealscribeError):
    """The tenant's key cannot be used now (provider unreachable, version retired)."""


class KeyRevoked(KeyUnavailable):
    """The tenant's key was revoked. Work must fail closed and must not be retried."""


class KeyringError(SealscribeError):
    """The local keyring on disk cannot be used; it is left exactly as found."""


class KeyringCorrupt(KeyringError):
    """A keyring file is unreadable or malformed."""


class KeyringPermissions(KeyringError):
    """A keyring file can be read or written by users other than its owner."""


class InvalidInput(SealscribeError, ValueError):
    """Malformed input from a caller; the message says exactly what is wrong."""


class NotFound(SealscribeError):
    """An unknown tenant, meeting, participant or segment (or one of another tenant)."""


class AuthenticationFailed(SealscribeError):
    """An API token that matches no tenant."""


class Conflict(SealscribeError):
    """The request cannot be carried out in the current state."""


class StoreUnavailable(SealscribeError):
    """The state store (Redis) could not be reached."""
