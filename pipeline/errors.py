"""The application's exception tree, and how every error we raise on purpose reaches a user:
an exit code for the CLI, an HTTP status and problem type for the API (and, from the status,
a close code for WebSockets). Mapped here once.

A leaf module apart from the key library's errors (``keys/errors.py``), which it maps too.
Errors from redis and PyAV are translated into these where they occur.

::

    SealscribeError                                    exit  HTTP
    ├── InvalidInput          malformed input           2    400 invalid-input
    ├── NotFound              unknown (or another
    │                         tenant's) object          3    404 not-found
    ├── StoreUnavailable      Redis unreachable         4    503 store-unavailable
    ├── AuthenticationFailed  unknown or bad token      7    401 unauthenticated
    ├── InsufficientScope     token lacks the scope     7    403 insufficient-scope
    ├── Conflict              clashes with the state    8    409 conflict
    └── QuotaExceeded         a per-tenant limit, or
                              too many tries            9    429 quota-exceeded (Retry-After)

    keys.errors.KeysError                              exit  HTTP
    ├── InvalidSeal           content failed to open    1    409 invalid-seal
    ├── KeyUnavailable        key not usable now        6    503 key-unavailable
    │   └── KeyRevoked        key revoked               6    403 key-revoked
    ├── KeyringError          keyring not trusted       5    500 internal
    ├── InvalidKeyInput       malformed key argument    2    400 invalid-input
    ├── UnknownKey            tenant has no key         3    404 not-found
    └── KeyConflict           clashes with the keys     8    409 conflict

Messages never contain audio, transcript text, tokens or key material.
"""

from __future__ import annotations

from dataclasses import dataclass

from keys.errors import (
    InvalidKeyInput,
    InvalidSeal,
    KeyConflict,
    KeyRevoked,
    KeyringError,
    KeysError,
    KeyUnavailable,
    UnknownKey,
)

__all__ = [
    "OURS",
    "AuthenticationFailed",
    "Conflict",
    "ErrorKind",
    "InsufficientScope",
    "InvalidInput",
    "NotFound",
    "QuotaExceeded",
    "SealscribeError",
    "StoreUnavailable",
    "kind_of",
]


class SealscribeError(Exception):
    """Base class of every application error sealscribe raises on purpose."""


class InvalidInput(SealscribeError, ValueError):
    """Malformed input from a caller; the message says exactly what is wrong."""


class NotFound(SealscribeError):
    """An unknown tenant, meeting, participant or segment (or one of another tenant)."""


class AuthenticationFailed(SealscribeError):
    """An API token that matches no tenant."""


class InsufficientScope(SealscribeError):
    """A valid API token without the scope the operation needs."""


class Conflict(SealscribeError):
    """The request cannot be carried out in the current state."""


class QuotaExceeded(SealscribeError):
    """A per-tenant limit (or a limit on failed attempts) is reached; ``retry_after`` says
    in how many seconds trying again can succeed, where that is known."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(SealscribeError):
    """The state store (Redis) could not be reached."""


#: every error raised on purpose, the application's and the key library's
OURS: tuple[type[Exception], ...] = (SealscribeError, KeysError)


@dataclass(frozen=True)
class ErrorKind:
    exit_code: int
    status: int
    slug: str

    @property
    def close_code(self) -> int:
        """The WebSocket close code: 4000 + the status for a bad request, a bad or unknown
        token, a revoked key, an unknown meeting or a quota; else 1011 (internal error)."""
        return 4000 + self.status if self.status in (400, 401, 403, 404, 429) else 1011


INTERNAL = ErrorKind(1, 500, "internal")

# the first match wins, so subclasses come before their bases
_KINDS: list[tuple[type[Exception], ErrorKind]] = [
    (InvalidInput, ErrorKind(2, 400, "invalid-input")),
    (InvalidKeyInput, ErrorKind(2, 400, "invalid-input")),
    (AuthenticationFailed, ErrorKind(7, 401, "unauthenticated")),
    (InsufficientScope, ErrorKind(7, 403, "insufficient-scope")),
    (NotFound, ErrorKind(3, 404, "not-found")),
    (UnknownKey, ErrorKind(3, 404, "not-found")),
    (Conflict, ErrorKind(8, 409, "conflict")),
    (KeyConflict, ErrorKind(8, 409, "conflict")),
    (QuotaExceeded, ErrorKind(9, 429, "quota-exceeded")),
    (KeyRevoked, ErrorKind(6, 403, "key-revoked")),
    (KeyUnavailable, ErrorKind(6, 503, "key-unavailable")),
    (StoreUnavailable, ErrorKind(4, 503, "store-unavailable")),
    (KeyringError, ErrorKind(5, 500, "internal")),
    # stored content that fails authentication was moved or altered: it is never delivered
    (InvalidSeal, ErrorKind(1, 409, "invalid-seal")),
]


def kind_of(exc: BaseException) -> ErrorKind:
    """How ``exc`` reaches a user: its exit code, HTTP status and problem type."""
    return next((kind for cls, kind in _KINDS if isinstance(exc, cls)), INTERNAL)
