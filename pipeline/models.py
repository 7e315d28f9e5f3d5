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
    "speakers",
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


#: what joins the labels of participants who talked at once into one participant id
#: (``Ann + Bob``, sorted; :func:`pipeline.ids.speaker_group`); a display name never
#: contains it (``participant_label``)
SPEAKERS_SEP = " + "
#: the most participants one speaker group names: speech of more at once is not kept
MAX_SPEAKERS = 4


def speakers(participant_id: str) -> tuple[str, ...]:
    """Who a participant id stands for: itself, or each member of a speaker group."""
    return tuple(participant_id.split(SPEAKERS_SEP))


#: the consent modes of a meeting
CONSENT_NOTICE = "notice"
CONSENT_OPT_IN = "opt-in"
CONSENT_MODES = (CONSENT_NOTICE, CONSENT_OPT_IN)


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
    #: ``notice`` (everyone is transcribed unless they opt out) or ``opt-in`` (nobody is
    #: until they consent)
    consent_mode: str = "notice"
    #: participants who consented (what ``opt-in`` waits for)
    opted_in: frozenset[str] = field(default_factory=frozenset)

    def transcribes(self, participant_id: str) -> bool:
        """The one policy rule: transcription on for the meeting, and the participant in:
        not opted out, and (in an ``opt-in`` meeting) consented. Speech of a speaker group
        (a mixed room, several talking at once) is in only if each of them is."""
        if not self.transcription or participant_id in self.opted_out:
            return False
        return all(
            name not in self.opted_out
            and (self.consent_mode != CONSENT_OPT_IN or name in self.opted_in)
            for name in speakers(participant_id)
        )


_AUDIO_HEADER = struct.Struct(">IQ")  # sample rate, start offset in milliseconds
#: version 2 of the header: a marker no sample rate can be, then sample rate, start, the
#: window of words to keep (ms from meeting start; -1: no bound) and the interim number
_AUDIO_MARK = b"SA2\x00"
_AUDIO_HEADER_V2 = struct.Struct(">4sIQqqI")


@dataclass(frozen=True)
class AudioSegment:
    """One utterance of one participant: 16-bit little-endian mono PCM, in memory only.

    A long utterance cut in pieces overlaps its neighbours by a second or so, so no word is
    lost at a cut; each piece then says which words are its own (``keep_from_ms`` /
    ``keep_to_ms``: those whose middle lies in that window) and the worker drops the rest.
    An interim segment (the utterance so far, for a live caption) carries its number
    ``part`` (1, 2, ...; 0 for a final segment).
    """

    participant_id: str
    seq: int
    start_ms: int
    sample_rate: int
    pcm: bytes = field(repr=False)
    keep_from_ms: int | None = None
    keep_to_ms: int | None = None
    part: int = 0

    @property
    def duration_ms(self) -> int:
        return len(self.pcm) * 1000 // (2 * self.sample_rate)

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_ms

    def keeps(self, start_ms: int, end_ms: int) -> bool:
        """Whether a word spanning ``start_ms``..``end_ms`` is this piece's own."""
        mid = (start_ms + end_ms) / 2
        return (self.keep_from_ms is None or mid >= self.keep_from_ms) and (
            self.keep_to_ms is None or mid < self.keep_to_ms
        )

    def payload(self) -> bytes:
        """What gets sealed: a fixed header then the samples."""
        if self.keep_from_ms is None and self.keep_to_ms is None and not self.part:
            return _AUDIO_HEADER.pack(self.sample_rate, self.start_ms) + self.pcm
        keep_from = -1 if self.keep_from_ms is None else self.keep_from_ms
        keep_to = -1 if self.keep_to_ms is None else self.keep_to_ms
        header = _AUDIO_HEADER_V2.pack(
            _AUDIO_MARK, self.sample_rate, self.start_ms, keep_from, keep_to, self.part
        )
        return header + self.pcm

    @classmethod
    def from_payload(cls, participant_id: str, seq: int, payload: bytes) -> AudioSegment:
        if payload[:4] == _AUDIO_MARK:
            if len(payload) < _AUDIO_HEADER_V2.size:
                raise InvalidInput("audio payload is shorter than its header")
            _, rate, start, keep_from, keep_to, part = _AUDIO_HEADER_V2.unpack_from(payload)
            return cls(
                participant_id,
                seq,
                start,
                rate,
                payload[_AUDIO_HEADER_V2.size :],
                None if keep_from < 0 else keep_from,
                None if keep_to < 0 else keep_to,
                part,
            )
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
    #: an interim caption's number within its utterance (0: a final segment)
    part: int = 0

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
