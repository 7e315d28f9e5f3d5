"""Meeting manifests: an authenticated record, per meeting and participant, of which audio
segments were sealed and stored and what became of each (transcribed, purged and why).

Records are MACed with a key derived from the participant's own audio data key
(:func:`manifest_key`), so only a process that may unwrap that key (capture, the worker, the
customer's verification) can write one, and nobody without the customer's tenant key can
forge, move or alter one unnoticed:

* **sealed** records are numbered per participant (0, 1, 2, ...) and each MAC covers its
  number, the segment's position and its audio expiry: a record deleted from the middle
  leaves a gap; one cut from the end is caught by the count capture **anchors** in the
  tenant's keyed audit chain when it closes (an audit entry ``manifest``).
* **outcome** records (``transcribed`` with the transcript's expiry, or ``purged:REASON``)
  say what became of a sealed segment; each MAC covers the position and the outcome.

Verification (:mod:`pipeline.services.records`) names each segment that was sealed but is
neither stored, transcribed, purged nor expired: deleted. Interim audio and captions are
live only and are not in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

from keys.macs import mac_fields, mac_fields_valid, subkey
from keys.types import DataKey

__all__ = [
    "TRANSCRIBED",
    "Outcome",
    "Sealed",
    "manifest_key",
    "outcome_record",
    "parse_outcome",
    "parse_sealed",
    "sealed_record",
]

TRANSCRIBED = "transcribed"


def manifest_key(audio_key: DataKey, tenant_id: str, meeting_id: str, participant_id: str) -> bytes:
    """The participant's manifest MAC key: a subkey of their audio data key."""
    return subkey(audio_key, b"sealscribe.manifest.v1", tenant_id, meeting_id, participant_id)


@dataclass(frozen=True)
class Sealed:
    n: int
    seq: int
    #: when the sealed audio expires untranscribed (epoch seconds)
    expires: int
    mac: str

    def valid(self, key: bytes) -> bool:
        return mac_fields_valid(key, self.mac, "sealed", self.n, self.seq, self.expires)


def sealed_record(key: bytes, n: int, seq: int, expires: int) -> str:
    return f"{seq}|{expires}|{mac_fields(key, 'sealed', n, seq, expires)}"


def parse_sealed(n: int, raw: str) -> Sealed | None:
    try:
        seq, expires, mac = raw.split("|")
        return Sealed(n, int(seq), int(expires), mac)
    except ValueError:
        return None


@dataclass(frozen=True)
class Outcome:
    seq: int
    #: "transcribed" or "purged:REASON"
    state: str
    #: when the transcript expires (transcribed), else 0
    expires: int
    mac: str

    def valid(self, key: bytes) -> bool:
        return bool(self.mac) and mac_fields_valid(
            key, self.mac, "outcome", self.seq, self.state, self.expires
        )


def outcome_record(key: bytes | None, seq: int, state: str, expires: int = 0) -> str:
    """An outcome record; without ``key`` (the key is revoked or gone) it is unauthenticated."""
    mac = "" if key is None else mac_fields(key, "outcome", seq, state, expires)
    return f"{state}|{expires}|{mac}"


def parse_outcome(seq: int, raw: str) -> Outcome | None:
    try:
        state, expires, mac = raw.rsplit("|", 2)
        return Outcome(seq, state, int(expires), mac)
    except ValueError:
        return None
