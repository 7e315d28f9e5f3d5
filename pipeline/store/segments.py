"""Sealed audio and transcript segments. Only ciphertext is ever stored here."""

from __future__ import annotations

from pipeline.models import SealedSegment, parse_segment_id
from pipeline.store import schema
from pipeline.store.connection import Redis, as_bytes, as_str, redis_errors

__all__ = ["SegmentStore"]


class SegmentStore:
    def __init__(self, r: Redis, audio_ttl: int, transcript_ttl: int) -> None:
        self.r = r
        self.audio_ttl = audio_ttl
        self.transcript_ttl = transcript_ttl

    @redis_errors
    def put_audio(self, segment: SealedSegment) -> str:
        """Store a sealed audio segment (idempotent) and return its id."""
        sid = segment.segment_id
        pipe = self.r.pipeline(transaction=True)
        pipe.set(schema.audio(segment.meeting_id, sid), segment.sealed, ex=self.audio_ttl)
        pipe.zadd(schema.meeting_audio(segment.meeting_id), {sid: segment.seq})
        pipe.execute()
        return sid

    @redis_errors
    def get_audio(self, meeting_id: str, sid: str) -> SealedSegment | None:
        """The sealed segment, or None once it was purged or expired."""
        blob = self.r.get(schema.audio(meeting_id, sid))
        if blob is None:
            return None
        participant, seq = parse_segment_id(sid)
        return SealedSegment(meeting_id, participant, seq, as_bytes(blob))

    @redis_errors
    def delete_audio(self, meeting_id: str, sid: str) -> bool:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(schema.audio(meeting_id, sid))
        pipe.zrem(schema.meeting_audio(meeting_id), sid)
        deleted, _ = pipe.execute()
        return bool(deleted)

    @redis_errors
    def pending_audio(self, meeting_id: str) -> list[str]:
        return [as_str(s) for s in self.r.zrange(schema.meeting_audio(meeting_id), 0, -1)]

    @redis_errors
    def complete(self, segment: SealedSegment, start_ms: int) -> None:
        """Store a sealed transcript and delete its audio, in one transaction: there is
        never a moment with both gone or (for a redelivered task) two transcripts."""
        sid = segment.segment_id
        pipe = self.r.pipeline(transaction=True)
        pipe.set(schema.transcript(segment.meeting_id, sid), segment.sealed,
                 ex=self.transcript_ttl)
        pipe.zadd(schema.meeting_transcript(segment.meeting_id), {sid: start_ms})
        pipe.delete(schema.audio(segment.meeting_id, sid))
        pipe.zrem(schema.meeting_audio(segment.meeting_id), sid)
        pipe.execute()

    @redis_errors
    def transcript_count(self, meeting_id: str) -> int:
        return int(self.r.zcard(schema.meeting_transcript(meeting_id)))

    @redis_errors
    def pending_count(self, meeting_id: str) -> int:
        return int(self.r.zcard(schema.meeting_audio(meeting_id)))

    @redis_errors
    def transcript(self, meeting_id: str) -> list[SealedSegment]:
        """The meeting's sealed transcript segments, ordered by start time."""
        sids = [as_str(s) for s in self.r.zrange(schema.meeting_transcript(meeting_id), 0, -1)]
        if not sids:
            return []
        blobs = self.r.mget([schema.transcript(meeting_id, s) for s in sids])
        out = []
        for sid, blob in zip(sids, blobs, strict=True):
            if blob is not None:
                participant, seq = parse_segment_id(sid)
                out.append(SealedSegment(meeting_id, participant, seq, as_bytes(blob)))
        return out
