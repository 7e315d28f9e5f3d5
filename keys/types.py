"""Small typed values that cross the ``keys`` API: purposes, contexts, wrapped keys, status."""

from __future__ import annotations

import base64
import binascii
import enum
import re
import struct
from dataclasses import dataclass, field

from keys import _primitives
from keys.errors import InvalidKeyInput

__all__ = [
    "DataKey",
    "KeyContext",
    "KeyStatus",
    "KeyUse",
    "Purpose",
    "WrappedKey",
    "encode_fields",
    "key_slot",
]


class Purpose(enum.StrEnum):
    """Why a data key is used. There is deliberately no purpose that could read content
    for training or analytics: a call for any other reason cannot even be expressed."""

    TRANSCRIBE = "transcribe"  #: capture sealing and the worker that transcribes
    #: authenticating or checking a meeting's manifest: no content is opened
    VERIFY = "verify"
    DELIVER = "deliver"  #: handing the customer their own transcript
    REWRAP = "rewrap"  #: moving a wrapped key to a new key version, content untouched


class KeyUse(enum.StrEnum):
    """Which of a meeting's two data keys: one seals audio, the other transcripts."""

    AUDIO = "audio"
    TRANSCRIPT = "transcript"


def encode_fields(*fields: str | bytes | int) -> bytes:
    """Unambiguous encoding of a tuple: each field is length-prefixed (u32, big endian),
    integers as u64. ``("ab", "c")`` and ``("a", "bc")`` therefore never collide."""
    out = bytearray()
    for value in fields:
        if isinstance(value, bool):
            raise TypeError("booleans are not context fields")
        if isinstance(value, int):
            if not 0 <= value < 2**64:
                raise ValueError("integer context fields must fit in 64 unsigned bits")
            raw = struct.pack(">Q", value)
        elif isinstance(value, str):
            raw = value.encode("utf-8")
        elif isinstance(value, bytes):
            raw = value
        else:
            raise TypeError(f"context fields are str, bytes or int, not {type(value).__name__}")
        out += struct.pack(">I", len(raw)) + raw
    return bytes(out)


def key_slot(use: KeyUse, participant_id: str | None = None) -> str:
    """A data key's name among its meeting's: ``audio``, or ``audio:PARTICIPANT``."""
    return use.value if participant_id is None else f"{use.value}:{participant_id}"


@dataclass(frozen=True)
class KeyContext:
    """What a data key belongs to. Providers bind a wrapped key to this context, so a
    wrapped key copied to another tenant, meeting, participant or use does not unwrap.

    ``participant_id`` names the participant a per-participant key belongs to (each
    participant's content has its own keys, so one person can be erased alone); None is the
    meeting's own key (the sealed join URL, and meetings from before per-participant keys)."""

    tenant_id: str
    meeting_id: str
    use: KeyUse
    participant_id: str | None = None

    def encode(self) -> bytes:
        fields: list[str | bytes] = [
            b"sealscribe.datakey.v1",
            self.tenant_id,
            self.meeting_id,
            self.use.value,
        ]
        if self.participant_id is not None:
            fields.append(self.participant_id)
        return encode_fields(*fields)

    @property
    def slot(self) -> str:
        """Its name among the meeting's wrapped keys: ``audio``, or ``audio:PARTICIPANT``."""
        return key_slot(self.use, self.participant_id)

    @classmethod
    def from_slot(cls, tenant_id: str, meeting_id: str, slot: str) -> KeyContext:
        use, _, participant = slot.partition(":")
        return cls(tenant_id, meeting_id, KeyUse(use), participant or None)


class DataKey:
    """A 256-bit data key in memory. Its ``repr`` never shows the material."""

    __slots__ = ("_material",)

    def __init__(self, material: bytes) -> None:
        if not isinstance(material, bytes):
            raise TypeError(f"data key material must be bytes, not {type(material).__name__}")
        if len(material) != _primitives.KEY_SIZE:
            raise ValueError(
                f"data key must be {_primitives.KEY_SIZE} bytes long, not {len(material)}"
            )
        self._material = material

    @classmethod
    def generate(cls) -> DataKey:
        return cls(_primitives.random_key())

    @property
    def material(self) -> bytes:
        return self._material

    def __repr__(self) -> str:
        return "DataKey(<redacted>)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataKey) and other._material == self._material

    def __hash__(self) -> int:
        return hash(self._material)


_WRAPPED_RE = re.compile(r"^([a-z][a-z0-9_-]*):v([1-9][0-9]*):([A-Za-z0-9+/=]+)$")


@dataclass(frozen=True)
class WrappedKey:
    """A data key encrypted under one version of the tenant's key, as stored in Redis.

    Text form ``PROVIDER:vVERSION:BASE64`` (the shape Vault Transit uses), so the version
    can be read without unwrapping."""

    provider: str
    version: int
    ciphertext: bytes = field(repr=False)

    def to_str(self) -> str:
        return f"{self.provider}:v{self.version}:{base64.b64encode(self.ciphertext).decode()}"

    @classmethod
    def from_str(cls, text: str) -> WrappedKey:
        m = _WRAPPED_RE.match(text)
        if m is None:
            raise InvalidKeyInput("wrapped key is not of the form PROVIDER:vVERSION:BASE64")
        try:
            blob = base64.b64decode(m.group(3), validate=True)
        except binascii.Error:
            raise InvalidKeyInput("wrapped key has invalid base64") from None
        return cls(m.group(1), int(m.group(2)), blob)


@dataclass(frozen=True)
class KeyStatus:
    """What a provider reports about a tenant's key; never the key itself."""

    tenant_id: str
    provider: str
    primary_version: int
    min_version: int
    versions: tuple[int, ...]
    revoked: bool
    #: provider-specific facts that are not secret (e.g. the Transit key name)
    details: dict[str, str] = field(default_factory=dict)
