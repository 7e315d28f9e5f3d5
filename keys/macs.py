"""MACs for records that must be checkable by whoever holds a data key: a subkey of a data
key for one named use, and an HMAC-SHA-256 over unambiguously encoded fields (used by the
meeting manifests in ``pipeline.manifest``)."""

from __future__ import annotations

import base64
import binascii

from keys import _primitives
from keys.types import DataKey, encode_fields

__all__ = ["mac_fields", "mac_fields_valid", "subkey"]


def subkey(key: DataKey, *info: str | bytes | int) -> bytes:
    """A 256-bit subkey of ``key`` for the use ``info`` names (HKDF-SHA-256): it reveals
    nothing of ``key``, and opens no content."""
    return _primitives.derive_key(key.material, encode_fields(*info))


def mac_fields(key: bytes, *fields: str | bytes | int) -> str:
    """Base64 HMAC-SHA-256 of ``encode_fields(*fields)``."""
    return base64.b64encode(_primitives.hmac_sha256(key, encode_fields(*fields))).decode()


def mac_fields_valid(key: bytes, mac: str, *fields: str | bytes | int) -> bool:
    """Whether ``mac`` is :func:`mac_fields` of these fields (constant-time)."""
    try:
        tag = base64.b64decode(mac, validate=True)
    except (binascii.Error, ValueError):
        return False
    return _primitives.equal(tag, _primitives.hmac_sha256(key, encode_fields(*fields)))
