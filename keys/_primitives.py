"""The hazardous layer: AEAD calls, nonces and key sizes. Private to ``keys/``.

Nothing outside ``keys/`` imports this module. Callers above it get recipes with no
algorithm choices (``keys.segment.seal`` / ``open``, ``LocalKeyring.wrap`` / ``unwrap``).

Two primitives, both from pyca/cryptography:

* Content (audio and transcript segments): Cobblestone-256, the C2SP chunked-encryption
  format (c2sp.org/chunked-encryption) over AES-256-GCM. It derives a fresh AEAD key and
  nonce from a random per-message salt, commits to key and context, and authenticates chunk
  order and the end of the message, so truncation, extension and reordering all fail.
* Key wrapping in the local keyring: AES-256-GCM with a random 96-bit nonce and the key
  context as associated data.

Every authentication failure becomes :class:`keys.errors.InvalidSeal`, which has no message.
"""

from __future__ import annotations

import os

from cryptography.cobblestone import Cobblestone256Decryptor, Cobblestone256Encryptor
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import constant_time, hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keys.errors import InvalidSeal

KEY_SIZE = 32
GCM_NONCE_SIZE = 12
GCM_TAG_SIZE = 16
#: Cobblestone-256 salt + commitment (56 bytes) and the final chunk's tag (16 bytes).
CHUNKED_OVERHEAD = 72


def random_key() -> bytes:
    """A fresh 256-bit key from the operating system's CSPRNG."""
    return os.urandom(KEY_SIZE)


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes):
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    if len(key) != KEY_SIZE:
        raise ValueError(f"key must be {KEY_SIZE} bytes long, not {len(key)}")


CHUNK_SIZE = 16384
_CHUNKED_HEADER = 56


def chunked_size(plaintext_len: int) -> int:
    """Exact Cobblestone-256 ciphertext length: header, then every chunk with its tag (the
    last chunk is short, possibly empty)."""
    return _CHUNKED_HEADER + plaintext_len + GCM_TAG_SIZE * (plaintext_len // CHUNK_SIZE + 1)


def chunked_encrypt(key: bytes, context: bytes, plaintext: bytes, prefix: bytes = b"") -> bytes:
    """``prefix`` followed by the Cobblestone-256 encryption of ``plaintext`` under
    ``context``. Encrypts straight into one preallocated buffer: concatenating the pieces
    would copy every segment twice and run at a quarter of the speed."""
    _check_key(key)
    enc = Cobblestone256Encryptor(key, context)
    out = bytearray(len(prefix) + chunked_size(len(plaintext)))
    view = memoryview(out)
    view[: len(prefix)] = prefix
    written = len(prefix) + enc.update_into(plaintext, view[len(prefix) :])
    tail = enc.finalize()
    view[written : written + len(tail)] = tail
    view.release()
    if written + len(tail) != len(out):
        raise RuntimeError("Cobblestone output length differs from the computed size")
    return bytes(out)


def chunked_decrypt(key: bytes, context: bytes, ciphertext: bytes | memoryview) -> bytes:
    """Cobblestone-256 decryption; raises :class:`InvalidSeal` on any failure."""
    _check_key(key)
    dec = Cobblestone256Decryptor(key, context)
    out = bytearray(len(ciphertext))
    try:
        written = dec.update_into(ciphertext, out)
        tail = dec.finalize()
    except (InvalidTag, ValueError):
        raise InvalidSeal() from None
    out[written : written + len(tail)] = tail
    del out[written + len(tail) :]
    return bytes(out)


def gcm_wrap(kek: bytes, aad: bytes, key: bytes, nonce: bytes | None = None) -> bytes:
    """AES-256-GCM: ``nonce || ciphertext || tag``. ``nonce`` is for known-answer tests."""
    _check_key(kek)
    nonce = os.urandom(GCM_NONCE_SIZE) if nonce is None else nonce
    if len(nonce) != GCM_NONCE_SIZE:
        raise ValueError(f"nonce must be {GCM_NONCE_SIZE} bytes long, not {len(nonce)}")
    return nonce + AESGCM(kek).encrypt(nonce, key, aad)


def gcm_unwrap(kek: bytes, aad: bytes, blob: bytes) -> bytes:
    """Inverse of :func:`gcm_wrap`; raises :class:`InvalidSeal` on any failure."""
    _check_key(kek)
    if len(blob) < GCM_NONCE_SIZE + GCM_TAG_SIZE:
        raise InvalidSeal()
    try:
        return AESGCM(kek).decrypt(blob[:GCM_NONCE_SIZE], blob[GCM_NONCE_SIZE:], aad)
    except InvalidTag:
        raise InvalidSeal() from None


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA-256 of ``data`` under a 256-bit ``key``."""
    _check_key(key)
    mac = _hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


def equal(a: bytes, b: bytes) -> bool:
    """Compare two MACs in constant time."""
    return constant_time.bytes_eq(a, b)


def derive_key(key: bytes, info: bytes) -> bytes:
    """A 256-bit subkey of ``key`` for the use ``info`` names (HKDF-SHA-256, no salt):
    knowing it reveals nothing of ``key`` nor of subkeys for other uses."""
    _check_key(key)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(key)
