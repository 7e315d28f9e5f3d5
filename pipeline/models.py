"""Small typed records passed between stages and returned by the services.

None of them holds plaintext content except :class:`AudioSegment` and
:class:`TranscriptSegment`, which exist only in process memory between capture or
transcription and ``keys.seal``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from pipeline.errors import InvalidInput

__all__ = [
    "ApiToken",
    "AudioSegment",
    "Meeting",
    "Scope",
    "SealedSegment",
    "Tenant",
    "TranscriptSegment",
    "Word",
]


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created: float
    #: the customer pulled the kill switch: nothing of this tenant is opened again
    revoked: bool = False
    #: which key provider holds this tenant's key (``local`` or ``transit``)
    key_provider: str = "local"
    #: retention overrides in seconds (None: the deployment's default)
    transcript_ttl: int | None = None
    audio_ttl: int | None = None


class Scope(StrEnum):
    """What an API token may do. ``admin`` includes the other two."""

    #: the tenant's keys, erasure (meeting deletes, the export of everything), retention,
    #: the audit log, and the tokens themselves
    ADMIN = "admin"
    #: meetings and bots: create, switch, consent, send and call back the bot, WHIP publish,
    #: live captions
    MEETINGS = "meetings"
    #: read only: meetings, transcripts, privacy reports, live captions
    READ = "read"


@dataclass(frozen=True)
class ApiToken:
    """One of a tenant's named API tokens, as stored: never the token itself, only its
    SHA-256 (``digest``, kept out of ``repr`` and of the CLI's JSON)."""

    id: str
    tenant_id: str
    name: str
    scopes: frozenset[Scope]
    created: float
    #: when it stops working (epoch seconds), or None
    expires: float | None = None
    #: the lifetime it was made with, in seconds: a rotated token gets as long again
    lifetime: int | None = None
    digest: str = field(default="", repr=False)

    def allows(self, *wanted: Scope) -> bool:
        """Whether the token holds any of ``wanted`` (``admin`` holds every scope)."""
        return Scope.ADMIN in self.scopes or any(s in self.scopes for s in wanted)

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


@dataclass(frozen=True)
class Meeting:
    id: str
    tenant_id: str
    created: float
    transcription: bool
    opted_out: frozenset[str] = field(default_factory=frozenset)
    #: spoken language (ISO 639-1), or None to detect it
    language: str | None = None
    #: translate speech into English instead of transcribing it as spoken
    translate: bool = False

    def transcribes(self, participant_id: str) -> bool:
        """The one policy rule: transcription on for the meeting and the participant in."""
        return self.transcription and participant_id not in self.opted_out


_AUDIO_HEADER = struct.Struct(">IQ")  # sample rate, start offset in milliseconds


@dataclass(frozen=True)
class AudioSegment:
    """One utterance of one participant: 16-bit little-endian mono PCM, in memory only."""

    participant_id: str
    seq: int
    start_ms: int
    sample_rate: int
    pcm: bytes = field(repr=False)

    @property
    def duration_ms(self) -> int:
        return len(self.pcm) * 1000 // (2 * self.sample_rate)

    def payload(self) -> bytes:
        """What gets sealed: a fixed header then the samples."""
        return _AUDIO_HEADER.pack(self.sample_rate, self.start_ms) + self.pcm

    @classmethod
    def from_payload(cls, participant_id: str, seq: int, payload: bytes) -> AudioSegment:
        if len(payload) < _AUDIO_HEADER.size:
            raise InvalidInput("audio payload is shorter than its header")
        rate, start = _AUDIO_HEADER.unpack_from(payload)
        return cls(participant_id, seq, start, rate, payload[_AUDIO_HEADER.size :])


@dataclass(frozen=True)
class SealedSegment:
    """An audio or transcript segment as stored: ids in the clear, content sealed."""

    meeting_id: str
    participant_id: str
    seq: int
    sealed: bytes = field(repr=False)

    @property
    def segment_id(self) -> str:
        return segment_id(self.participant_id, self.seq)


def segment_id(participant_id: str, seq: int) -> str:
    """Segment ids are ``PARTICIPANT.SEQ``: deterministic, so storing twice is idempotent."""
    return f"{participant_id}.{seq}"


def parse_segment_id(sid: str) -> tuple[str, int]:
    participant, _, seq = sid.rpartition(".")
    if not participant or not (seq.isascii() and seq.isdigit()):
        raise InvalidInput(f"segment id {sid!r} is not of the form PARTICIPANT.SEQ")
    return participant, int(seq)


@dataclass(frozen=True)
class Word:
    start_ms: int
    end_ms: int
    word: str
    probability: float


@dataclass(frozen=True)
class TranscriptSegment:
    """What one audio segment said, with word timings (times from meeting start)."""

    participant_id: str
    seq: int
    start_ms: int
    end_ms: int
    text: str = field(repr=False)
    words: tuple[Word, ...] = field(default=(), repr=False)
    #: the spoken language (given or detected), and whether ``text`` is its English translation
    language: str | None = None
    translated: bool = False

    def payload(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> TranscriptSegment:
        """Parse an opened payload; :class:`InvalidInput` (a ``ValueError``) if it is not a
        transcript segment."""
        doc: Any = json.loads(payload)
        try:
            doc["words"] = tuple(Word(**w) for w in doc.get("words", ()))
            return cls(**doc)
        except (AttributeError, TypeError, KeyError) as exc:
            raise InvalidInput(f"not a transcript segment ({type(exc).__name__})") from None


class BotState(StrEnum):
    """Where a meeting's bot is. ``left`` and ``failed`` are final."""

    REQUESTED = "requested"
    JOINING = "joining"
    IN_MEETING = "in_meeting"
    RECONNECTING = "reconnecting"
    LEFT = "left"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (BotState.LEFT, BotState.FAILED)


@dataclass(frozen=True)
class BotStatus:
    meeting_id: str
    state: BotState
    #: the meeting's address without pin or secret
    target: str
    since: float
    #: why it failed, or what it is retrying
    reason: str = ""
    #: display names of the participants whose audio the bot receives
    participants: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "meeting_id": self.meeting_id,
            "state": self.state.value,
            "target": self.target,
            "since": self.since,
            "reason": self.reason,
            "participants": list(self.participants),
        }
