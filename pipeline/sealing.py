"""Sealing and opening pipeline segments: the bridge from ``models`` to ``keys.segment``.

Capture seals :class:`AudioSegment` here; the worker opens it and seals the
:class:`TranscriptSegment`; delivery opens that. All in memory only.
"""

from __future__ import annotations

import functools
import logging

from keys import segment as sealed_format
from keys.segment import SegmentContext, SegmentKind
from keys.types import DataKey
from pipeline import faults
from pipeline.models import AudioSegment, SealedSegment, TranscriptSegment

__all__ = [
    "open_audio",
    "open_interim_audio",
    "open_interim_transcript",
    "open_join_target",
    "open_transcript",
    "seal_audio",
    "seal_interim_audio",
    "seal_interim_transcript",
    "seal_join_target",
    "seal_transcript",
]

log = logging.getLogger(__name__)


def _context(
    tenant_id: str, meeting_id: str, participant_id: str, seq: int, kind: SegmentKind
) -> SegmentContext:
    if faults.on("skip-seal-context"):
        return SegmentContext("-", "-", "-", 0, kind)
    return SegmentContext(tenant_id, meeting_id, participant_id, seq, kind)


def _seal(
    key: DataKey,
    tenant_id: str,
    meeting_id: str,
    participant_id: str,
    seq: int,
    kind: SegmentKind,
    payload: bytes,
) -> SealedSegment:
    ctx = _context(tenant_id, meeting_id, participant_id, seq, kind)
    return SealedSegment(meeting_id, participant_id, seq, sealed_format.seal(key, ctx, payload))


def _open(key: DataKey, tenant_id: str, sealed: SealedSegment, kind: SegmentKind) -> bytes:
    ctx = _context(tenant_id, sealed.meeting_id, sealed.participant_id, sealed.seq, kind)
    return sealed_format.open(key, ctx, sealed.sealed)


def seal_audio(
    key: DataKey,
    tenant_id: str,
    meeting_id: str,
    segment: AudioSegment,
    *,
    interim: bool = False,
) -> SealedSegment:
    """Seal a final audio segment or, with ``interim``, the audio so far of an utterance in
    progress (numbered from 1 in ``segment.part``)."""
    if interim and segment.part < 1:
        raise ValueError("an interim audio segment is numbered from 1")
    kind = SegmentKind.INTERIM_AUDIO if interim else SegmentKind.AUDIO
    return _seal(
        key, tenant_id, meeting_id, segment.participant_id, segment.seq, kind, segment.payload()
    )


def open_audio(
    key: DataKey, tenant_id: str, sealed: SealedSegment, *, interim: bool = False
) -> AudioSegment:
    """Open in memory; :class:`keys.errors.InvalidSeal` if it is not what it claims to be
    (an interim opened as a final, or the other way round, included)."""
    kind = SegmentKind.INTERIM_AUDIO if interim else SegmentKind.AUDIO
    payload = _open(key, tenant_id, sealed, kind)
    return AudioSegment.from_payload(sealed.participant_id, sealed.seq, payload)


def seal_transcript(
    key: DataKey,
    tenant_id: str,
    meeting_id: str,
    segment: TranscriptSegment,
    *,
    interim: bool = False,
) -> SealedSegment:
    if faults.on("log-plaintext") and not interim:
        log.warning("sealing the transcript %s", segment.text)
    kind = SegmentKind.INTERIM_TRANSCRIPT if interim else SegmentKind.TRANSCRIPT
    return _seal(
        key, tenant_id, meeting_id, segment.participant_id, segment.seq, kind, segment.payload()
    )


def open_transcript(
    key: DataKey, tenant_id: str, sealed: SealedSegment, *, interim: bool = False
) -> TranscriptSegment:
    kind = SegmentKind.INTERIM_TRANSCRIPT if interim else SegmentKind.TRANSCRIPT
    return TranscriptSegment.from_payload(_open(key, tenant_id, sealed, kind))


# Interim segments (a live caption of an utterance in progress) are sealed with the same
# data keys as finals but as their own kinds, at their utterance's position; the interim
# number is inside the sealed payload. So an interim can never pass for a final, nor a final
# for an interim, nor one utterance's interim for another's.
seal_interim_audio = functools.partial(seal_audio, interim=True)
open_interim_audio = functools.partial(open_audio, interim=True)
seal_interim_transcript = functools.partial(seal_transcript, interim=True)
open_interim_transcript = functools.partial(open_transcript, interim=True)


#: the position a join URL is sealed at: a participant id no participant can have (ids are
#: printable; see ``pipeline.ids``), so it can never pass for an audio segment, nor one for it
_JOIN_PARTICIPANT = "\x00join-target"


def _join_context(tenant_id: str, meeting_id: str) -> SegmentContext:
    return SegmentContext(tenant_id, meeting_id, _JOIN_PARTICIPANT, 0, SegmentKind.AUDIO)


def seal_join_target(key: DataKey, tenant_id: str, meeting_id: str, url: str) -> bytes:
    """Seal a join URL (its pin and API secret) under the meeting's audio data key, bound
    to the tenant and meeting: only a process that may unwrap that key opens it."""
    return sealed_format.seal(key, _join_context(tenant_id, meeting_id), url.encode())


def open_join_target(key: DataKey, tenant_id: str, meeting_id: str, sealed: bytes) -> str:
    """Open a join URL sealed by :func:`seal_join_target`; :class:`keys.errors.InvalidSeal`
    if it is not one of this meeting's."""
    return sealed_format.open(key, _join_context(tenant_id, meeting_id), sealed).decode()
