"""Manifest records: each MAC binds its participant's key, number, position and expiry, so
a record moved, renumbered, given a longer life or written without the key fails."""

from __future__ import annotations

import pytest

from keys.types import DataKey
from pipeline.manifest import (
    TRANSCRIBED,
    manifest_key,
    outcome_record,
    parse_outcome,
    parse_sealed,
    sealed_record,
)

KEY = DataKey.generate()
K = manifest_key(KEY, "t", "m", "alice")


def test_a_sealed_record_checks_only_at_its_number_with_its_key() -> None:
    raw = sealed_record(K, 3, 41_000, 1_700_000_000)
    record = parse_sealed(3, raw)
    assert record is not None and record.valid(K)
    assert (record.seq, record.expires) == (41_000, 1_700_000_000)
    moved = parse_sealed(4, raw)  # the same record at another number
    assert moved is not None and not moved.valid(K)
    seq, expires, mac = raw.split("|")
    for forged in (f"{seq}|{int(expires) + 1}|{mac}", f"{int(seq) + 1}|{expires}|{mac}"):
        record = parse_sealed(3, forged)
        assert record is not None and not record.valid(K)
    assert not parse_sealed(3, raw).valid(manifest_key(KEY, "t", "m", "bob"))  # type: ignore[union-attr]
    assert not parse_sealed(3, raw).valid(manifest_key(DataKey.generate(), "t", "m", "alice"))  # type: ignore[union-attr]


@pytest.mark.parametrize("raw", ["", "1|2", "a|b|c", "1|2|3|4"])
def test_a_mangled_record_does_not_parse(raw: str) -> None:
    assert parse_sealed(0, raw) is None


def test_an_outcome_binds_its_state_and_expiry() -> None:
    raw = outcome_record(K, 41_000, TRANSCRIBED, 1_800_000_000)
    outcome = parse_outcome(41_000, raw)
    assert outcome is not None and outcome.valid(K) and outcome.state == TRANSCRIBED
    assert not parse_outcome(42_000, raw).valid(K)  # type: ignore[union-attr]
    state, expires, mac = raw.rsplit("|", 2)
    later = parse_outcome(41_000, f"{state}|{int(expires) + 86400}|{mac}")
    assert later is not None and not later.valid(K)
    unkeyed = parse_outcome(41_000, outcome_record(None, 41_000, TRANSCRIBED))
    assert unkeyed is not None and unkeyed.mac == "" and not unkeyed.valid(K)
    assert parse_outcome(1, "garbage") is None
