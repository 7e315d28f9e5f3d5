"""Known-answer vectors for the primitives the sealed format and the keyring use.

* C2SP chunked encryption (Cobblestone-256): every vector, through ``chunked_decrypt``.
* AES-GCM: the vectors with our parameters (256-bit key, 96-bit nonce, 128-bit tag), through
  ``gcm_wrap`` / ``gcm_unwrap``; all others through AESGCM itself to check the library.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys import _primitives
from keys.errors import InvalidSeal
from tests.conftest import shared_data


def _load(name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    doc = json.loads(shared_data("wycheproof", name).read_text())
    return [(group, test) for group in doc["testGroups"] for test in group["tests"]]


def _ids(cases: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    return [f"tc{t['tcId']}" for _, t in cases]


try:
    CHUNKED = _load("c2sp_chunked_encryption_aes_256_gcm_test.json")
    GCM = _load("aes_gcm_test.json")
except BaseException:  # data absent: the tests below skip with the reason
    CHUNKED, GCM = [], []


def test_vectors_present() -> None:
    shared_data("wycheproof", "aes_gcm_test.json")
    assert len(CHUNKED) == 35
    assert len(GCM) == 316


@pytest.mark.parametrize(("group", "tc"), CHUNKED, ids=_ids(CHUNKED))
def test_c2sp_chunked(group: dict[str, Any], tc: dict[str, Any]) -> None:
    key = bytes.fromhex(tc["key"])
    ctx = bytes.fromhex(tc["ctx"])
    ct = zlib.decompress(bytes.fromhex(tc["ct"]))
    if tc["result"] == "valid":
        pt = _primitives.chunked_decrypt(key, ctx, ct)
        assert len(pt) == tc["msgLength"]
        assert hashlib.sha512(pt).hexdigest() == tc["msgSha512"]
    elif len(key) != _primitives.KEY_SIZE:
        with pytest.raises(ValueError, match="key must be 32 bytes"):
            _primitives.chunked_decrypt(key, ctx, ct)
    else:
        with pytest.raises(InvalidSeal):
            _primitives.chunked_decrypt(key, ctx, ct)


@pytest.mark.parametrize(("group", "tc"), GCM, ids=_ids(GCM))
def test_aes_gcm(group: dict[str, Any], tc: dict[str, Any]) -> None:
    key, iv, aad = (bytes.fromhex(tc[k]) for k in ("key", "iv", "aad"))
    msg, ct, tag = (bytes.fromhex(tc[k]) for k in ("msg", "ct", "tag"))
    ours = len(key) == 32 and len(iv) == 12 and group["tagSize"] == 128
    if ours:
        if tc["result"] == "valid":
            assert _primitives.gcm_wrap(key, aad, msg, nonce=iv) == iv + ct + tag
            assert _primitives.gcm_unwrap(key, aad, iv + ct + tag) == msg
        else:
            with pytest.raises(InvalidSeal):
                _primitives.gcm_unwrap(key, aad, iv + ct + tag)
        return
    # Other parameter sets: the library must agree with every vector it accepts. It refuses
    # nonces shorter than 8 or longer than 128 bytes outright (a ValueError), a safe answer.
    try:
        out: bytes | None = AESGCM(key).decrypt(iv, ct + tag, aad)
    except InvalidTag:
        out = None
    except ValueError:
        assert not 8 <= len(iv) <= 128
        return
    if tc["result"] == "valid":
        assert out == msg
    else:
        assert out is None
