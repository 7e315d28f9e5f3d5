"""Sealing and opening pipeline segments: the bridge from ``models`` to ``keys.segment``.

Capture seals :class:`AudioSegment` here; the worker opens it here, in memory only.
"""

from __future__ import annotations

from keys import segment as sealed_format
from keys.segment import SegmentContext, SegmentKind
from keys.types import DataKey
from pipeline.models import AudioSegment, SealedSegment, TranscriptSegment

__all__ = ["open_audio", "open_transcript", "seal_audio", "seal_transcript"]


def _context(tenant_id: str, meeting_id: str, participant_id: str, seq: int,
             kind: SegmentKind) -> SegmentContext:
    return SegmentContext(tenant_id, meeting_id, participant_id, seq, kind)


def seal_audio(key: DataKey, tenant_id: str, meeting_id: str,
               segment: AudioSegment) -> SealedSegment:
    ctx = _context(tenant_id, meeting_id, segment.participant_id, segment.seq,
                   SegmentKind.AUDIO)
    return SealedSegment(meeting_id, segment.participant_id, segment.seq,
                         sealed_format.seal(key, ctx, segment.payload()))


def open_audio(key: DataKey, tenant_id: str, sealed: SealedSegment) -> AudioSegment:
    """Open in memory; :class:`keys.errors.InvalidSeal` if it is not what it claims to be."""
    ctx = _context(tenant_id, sealed.meeting_id, sealed.participant_id, sealed.seq,
                   SegmentKind.AUDIO)
    payload = sealed_format.open(key, ctx, sealed.sealed)
    return AudioSegment.from_payload(sealed.participant_id, sealed.seq, payload)


def seal_transcript(key: DataKey, tenant_id: str, meeting_id: str,
                    segment: TranscriptSegment) -> SealedSegment:
    ctx = _context(tenant_id, meeting_id, segment.participant_id, segment.seq,
                   SegmentKind.TRANSCRIPT)
    return SealedSegment(meeting_id, segment.participant_id, segment.seq,
                         sealed_format.seal(key, ctx, segment.payload()))


def open_transcript(key: DataKey, tenant_id: str, sealed: SealedSegment) -> TranscriptSegment:
    ctx = _context(tenant_id, sealed.meeting_id, sealed.participant_id, sealed.seq,
                   SegmentKind.TRANSCRIPT)
    return TranscriptSegment.from_payload(sealed_format.open(key, ctx, sealed.sealed))
