"""The sealed-segment format: round trips, and every kind of tampering fails closed with the
one message-less error."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys import segment
from keys.errors import InvalidSeal
from keys.segment import HEADER_SIZE, SegmentContext, SegmentKind
from keys.types import DataKey

KEY = DataKey(bytes(range(32)))
CTX = SegmentContext("t_a", "m_1", "p_1", 7, SegmentKind.AUDIO)

ids = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12
)
contexts = st.builds(
    SegmentContext, ids, ids, ids, st.integers(0, 2**64 - 1), st.sampled_from(SegmentKind)
)


def assert_fails(key: DataKey, ctx: SegmentContext, sealed: bytes) -> None:
    with pytest.raises(InvalidSeal) as info:
        segment.open(key, ctx, sealed)
    assert str(info.value) == ""
    assert info.value.args == ()


@given(contexts, st.binary(max_size=40_000))
@settings(max_examples=60, deadline=None)
def test_round_trip(ctx: SegmentContext, plaintext: bytes) -> None:
    sealed = segment.seal(KEY, ctx, plaintext)
    assert sealed[:4] == b"SSEG" and sealed[4] == 1 and sealed[5] == int(ctx.kind)
    assert len(plaintext) < 16 or plaintext not in sealed
    assert segment.open(KEY, ctx, sealed) == plaintext


def test_every_single_bit_flip_fails() -> None:
    sealed = segment.seal(KEY, CTX, b"twelve bytes")
    for i in range(len(sealed) * 8):
        tampered = bytearray(sealed)
        tampered[i // 8] ^= 1 << (i % 8)
        assert_fails(KEY, CTX, bytes(tampered))


def test_every_truncation_fails() -> None:
    sealed = segment.seal(KEY, CTX, b"x" * 20_000)  # two chunks
    for n in range(len(sealed)):
        assert_fails(KEY, CTX, sealed[:n])


@given(st.binary(min_size=1, max_size=64))
def test_any_extension_fails(extra: bytes) -> None:
    assert_fails(KEY, CTX, segment.seal(KEY, CTX, b"payload") + extra)


def test_chunks_cannot_be_reordered() -> None:
    body = bytes(range(256)) * 200  # 51,200 bytes: four chunks
    sealed = segment.seal(KEY, CTX, body)
    chunk = 16384 + 16
    start = HEADER_SIZE + 56
    a, b = sealed[start : start + chunk], sealed[start + chunk : start + 2 * chunk]
    swapped = sealed[:start] + b + a + sealed[start + 2 * chunk :]
    assert_fails(KEY, CTX, swapped)


@pytest.mark.parametrize(
    "change",
    [
        {"tenant_id": "t_b"},
        {"meeting_id": "m_2"},
        {"participant_id": "p_2"},
        {"seq": 8},
        {"seq": 6},
        {"kind": SegmentKind.TRANSCRIPT},
    ],
)
def test_segment_cannot_move(change: dict[str, object]) -> None:
    sealed = segment.seal(KEY, CTX, b"who said what")
    assert_fails(KEY, dataclasses.replace(CTX, **change), sealed)  # type: ignore[arg-type]


def test_segments_cannot_swap_positions() -> None:
    first = segment.seal(KEY, CTX, b"first")
    second_ctx = dataclasses.replace(CTX, seq=CTX.seq + 1)
    second = segment.seal(KEY, second_ctx, b"second")
    assert_fails(KEY, CTX, second)
    assert_fails(KEY, second_ctx, first)


def test_fields_are_length_prefixed() -> None:
    # ("ab", "c") must not collide with ("a", "bc")
    a = SegmentContext("t", "ab", "c", 1, SegmentKind.AUDIO)
    b = SegmentContext("t", "a", "bc", 1, SegmentKind.AUDIO)
    assert_fails(KEY, b, segment.seal(KEY, a, b"x"))


def test_wrong_key_fails() -> None:
    sealed = segment.seal(KEY, CTX, b"x")
    assert_fails(DataKey(bytes(32)), CTX, sealed)


def test_header_version_is_checked() -> None:
    sealed = bytearray(segment.seal(KEY, CTX, b"x"))
    sealed[4] = 2
    assert_fails(KEY, CTX, bytes(sealed))


def test_same_plaintext_seals_differently() -> None:
    assert segment.seal(KEY, CTX, b"x") != segment.seal(KEY, CTX, b"x")


def test_misuse_fails_loudly_with_precise_messages() -> None:
    with pytest.raises(TypeError, match="key must be a DataKey, not bytes"):
        segment.seal(bytes(32), CTX, b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="plaintext must be bytes, not str"):
        segment.seal(KEY, CTX, "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data key must be 32 bytes long, not 16"):
        DataKey(bytes(16))
    with pytest.raises(ValueError, match="seq must be between 0 and 2\\*\\*64 - 1"):
        SegmentContext("t", "m", "p", -1, SegmentKind.AUDIO)
    with pytest.raises(ValueError, match="participant_id must be a non-empty string"):
        SegmentContext("t", "m", "", 1, SegmentKind.AUDIO)


def test_data_key_repr_hides_material() -> None:
    assert "redacted" in repr(KEY)
    assert bytes(range(32)).hex() not in repr(KEY)
