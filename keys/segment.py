"""The sealed-segment format: ``seal()`` and ``open()``, with no algorithm choices.

A sealed segment is an 8-byte header followed by a Cobblestone-256 message. The header and
the segment's position (tenant, meeting, participant, sequence number, kind) are bound into
the Cobblestone context, so a segment that is altered, truncated, extended, or moved to
another position fails to open with :class:`keys.errors.InvalidSeal`. See ``FORMAT.md``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from keys import _primitives
from keys.errors import InvalidSeal
from keys.types import DataKey, encode_fields

__all__ = ["HEADER_SIZE", "MAGIC", "VERSION", "SegmentContext", "SegmentKind", "open", "seal"]

MAGIC = b"SSEG"
VERSION = 1
HEADER_SIZE = 8
_CONTEXT_LABEL = b"sealscribe.segment.v1"


class SegmentKind(enum.IntEnum):
    """What a sealed segment holds; part of the header and of the context."""

    AUDIO = 1
    TRANSCRIPT = 2
    #: the audio of an utterance still in progress (a live caption's source)
    INTERIM_AUDIO = 3
    #: what an utterance in progress said so far (a live caption, never the transcript)
    INTERIM_TRANSCRIPT = 4


@dataclass(frozen=True)
class SegmentContext:
    """Where a segment belongs. Opening under any other context fails."""

    tenant_id: str
    meeting_id: str
    participant_id: str
    seq: int
    kind: SegmentKind

    def __post_init__(self) -> None:
        for name in ("tenant_id", "meeting_id", "participant_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
            if any("\ud800" <= c <= "\udfff" for c in value):
                raise ValueError(f"{name} must be text without lone surrogates")
        if isinstance(self.seq, bool) or not isinstance(self.seq, int):
            raise TypeError("seq must be an int")
        if not 0 <= self.seq < 2**64:
            raise ValueError("seq must be between 0 and 2**64 - 1")

    def header(self) -> bytes:
        return MAGIC + bytes([VERSION, int(self.kind), 0, 0])

    def encode(self, header: bytes) -> bytes:
        return encode_fields(
            _CONTEXT_LABEL, header, self.tenant_id, self.meeting_id, self.participant_id, self.seq
        )


def seal(key: DataKey, context: SegmentContext, plaintext: bytes) -> bytes:
    """Seal ``plaintext`` for ``context`` under the meeting's data key.

    Args:
      key: the meeting's data key for this kind of content.
      context: the segment's tenant, meeting, participant, sequence number and kind.
      plaintext: the content; it is never written anywhere by this function.

    Returns:
      The sealed segment: header, then ciphertext (72 bytes longer than ``plaintext``
      plus 16 bytes per 16 KiB chunk).
    """
    if not isinstance(key, DataKey):
        raise TypeError(f"key must be a DataKey, not {type(key).__name__}")
    if not isinstance(plaintext, (bytes, bytearray, memoryview)):
        raise TypeError(f"plaintext must be bytes, not {type(plaintext).__name__}")
    header = context.header()
    return _primitives.chunked_encrypt(
        key.material, context.encode(header), bytes(plaintext), prefix=header
    )


def open(key: DataKey, context: SegmentContext, sealed: bytes) -> bytes:
    """Open a sealed segment in memory; raises :class:`InvalidSeal` if anything is off."""
    if not isinstance(key, DataKey):
        raise TypeError(f"key must be a DataKey, not {type(key).__name__}")
    if not isinstance(sealed, bytes):
        raise TypeError(f"sealed must be bytes, not {type(sealed).__name__}")
    header = context.header()
    if sealed[:HEADER_SIZE] != header:
        raise InvalidSeal()
    return _primitives.chunked_decrypt(
        key.material, context.encode(header), memoryview(sealed)[HEADER_SIZE:]
    )
