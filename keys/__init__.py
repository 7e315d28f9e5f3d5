"""Customer-held keys: providers, envelope encryption, the sealed-segment format, audit.

This package is a library: it imports nothing from ``pipeline`` or ``workers``.

Public API::

    seal(key, context, plaintext) -> bytes       # keys.segment
    open(key, context, sealed) -> bytes          # raises InvalidSeal, message-less
    KeyProvider, LocalKeyring                    # who holds the tenant's key
    KeyService                                   # audited wrap / unwrap / rotate / revoke
    AuditLog, AuditHead, verify                  # the keyed, hash-chained key-use log
"""

from keys.audit import AuditEntry, AuditHead, AuditLog, AuditStore, VerifyReport, verify
from keys.errors import InvalidSeal, KeyRevoked, KeysError, KeyUnavailable
from keys.local import LocalKeyring
from keys.provider import KeyProvider
from keys.segment import SegmentContext, SegmentKind, open, seal
from keys.service import KeyService, RotationReport, WrappedKeyStore
from keys.types import DataKey, KeyContext, KeyStatus, KeyUse, Purpose, WrappedKey

__all__ = [
    "AuditEntry",
    "AuditHead",
    "AuditLog",
    "AuditStore",
    "DataKey",
    "InvalidSeal",
    "KeyContext",
    "KeyProvider",
    "KeyRevoked",
    "KeyService",
    "KeyStatus",
    "KeyUnavailable",
    "KeyUse",
    "KeysError",
    "LocalKeyring",
    "Purpose",
    "RotationReport",
    "SegmentContext",
    "SegmentKind",
    "VerifyReport",
    "WrappedKey",
    "WrappedKeyStore",
    "open",
    "seal",
    "verify",
]
