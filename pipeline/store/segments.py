"""Sealed audio and transcript segments. Only ciphertext is ever stored here."""

from __future__ import annotations

import time
from typing import Any

from pipeline import faults
from pipeline.models import SealedSegment, parse_segment_id
from pipeline.store import schema
from pipeline.store.connection import Durable, Redis, as_bytes, as_str, redis_errors
from pipeline.store.interims import InterimStore

__all__ = ["CAPTION_HISTORY", "SegmentStore"]

#: caption events kept per meeting for clients that reconnect (ids only; about 1 MB)
CAPTION_HISTORY = 10_000


# Store a sealed audio segment and, atomically, record it in its participant's manifest as
# record n, iff the manifest still has exactly n records. KEYS: audio, meeting audio,
# manifest. ARGV: sealed, ttl, sid, seq, count field, n, record field, record.
_PUT_RECORDED = """
local n = tonumber(redis.call('HGET', KEYS[3], ARGV[5]) or '0')
if n ~= tonumber(ARGV[6]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[7], ARGV[8], ARGV[5], n + 1)
return 1
"""


class SegmentStore:
    def __init__(
        self, r: Redis, audio_ttl: int, transcript_ttl: int, durable: Durable | None = None
    ) -> None:
        self.r = r
        self.durable = durable if durable is not None else Durable(r)
        self.audio_ttl = audio_ttl
        self.transcript_ttl = transcript_ttl
        self.interims = InterimStore(r)
        self._release = r.register_script(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end"
        )
        self._put_recorded = r.register_script(_PUT_RECORDED)

    @redis_errors
    def put_audio(self, segment: SealedSegment, ttl: int | None = None) -> str:
        """Store a sealed audio segment (idempotent) for at most ``ttl`` seconds (the
        longest it may wait untranscribed) and return its id."""
        sid = segment.segment_id
        self._index(segment.meeting_id, sid)
        w = self.durable.client()
        pipe = w.pipeline(transaction=True)
        pipe.set(schema.audio(segment.meeting_id, sid), segment.sealed, ex=ttl or self.audio_ttl)
        pipe.zadd(schema.meeting_audio(segment.meeting_id), {sid: segment.seq})
        # the utterance is final now: an interim of it still waiting is moot
        self.interims.drop_audio(pipe, segment.meeting_id, segment.participant_id, segment.seq)
        pipe.execute()
        self.durable.confirm(w, f"sealed audio {segment.meeting_id}/{sid}")
        return sid

    @redis_errors
    def put_recorded(self, segment: SealedSegment, ttl: int, n: int, record: str) -> bool:
        """Store a sealed audio segment and record it as record ``n`` of its participant's
        manifest, in one step; False (nothing stored) if the manifest no longer has ``n``
        records (another writer got there first: read :meth:`manifest_count` again)."""
        sid, meeting_id = segment.segment_id, segment.meeting_id
        participant = segment.participant_id
        self._index(meeting_id, sid)  # (left pointing at nothing when this one loses)
        w = self.durable.client()
        stored = self._put_recorded(
            client=w,
            keys=[
                schema.audio(meeting_id, sid),
                schema.meeting_audio(meeting_id),
                schema.meeting_manifest(meeting_id),
            ],
            args=[
                segment.sealed,
                ttl,
                sid,
                segment.seq,
                schema.manifest_count(participant),
                n,
                schema.manifest_record(participant, n),
                record,
            ],
        )
        if stored:
            self.durable.confirm(w, f"sealed audio {meeting_id}/{sid}")
            pipe = self.r.pipeline(transaction=True)
            self.interims.drop_audio(pipe, meeting_id, participant, segment.seq)
            pipe.execute()
        return bool(stored)

    def _index(self, meeting_id: str, sid: str) -> None:
        """List a segment in ``ss:pending`` (a slot of its own on a cluster) before its audio
        is stored: a crash in between leaves an entry without audio, which every reader
        treats as audio gone (expired) and the retention sweep drops."""
        self.r.zadd(schema.PENDING, {schema.pending_member(meeting_id, sid): time.time()})

    @redis_errors
    def manifest_count(self, meeting_id: str, participant_id: str) -> int:
        raw = self.r.hget(
            schema.meeting_manifest(meeting_id), schema.manifest_count(participant_id)
        )
        return int(raw or 0)

    @redis_errors
    def manifest(self, meeting_id: str) -> tuple[dict[str, str], dict[str, str]]:
        """The meeting's manifest records and outcome records, as stored (unchecked)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hgetall(schema.meeting_manifest(meeting_id))
        pipe.hgetall(schema.meeting_outcomes(meeting_id))
        records, outcomes = pipe.execute()
        return (
            {as_str(k): as_str(v) for k, v in records.items()},
            {as_str(k): as_str(v) for k, v in outcomes.items()},
        )

    @redis_errors
    def stored(self, meeting_id: str, sids: list[str]) -> tuple[set[str], set[str]]:
        """Of ``sids``: those whose sealed audio is stored, and those whose sealed
        transcript is (each key itself, not an index)."""
        if not sids:
            return set(), set()
        pipe = self.r.pipeline(transaction=False)
        for sid in sids:
            pipe.exists(schema.audio(meeting_id, sid))
            pipe.exists(schema.transcript(meeting_id, sid))
        found = pipe.execute()
        audio = {sid for sid, ok in zip(sids, found[0::2], strict=True) if ok}
        text = {sid for sid, ok in zip(sids, found[1::2], strict=True) if ok}
        return audio, text

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
        self._forget(pipe, meeting_id, sid)
        deleted = bool(pipe.execute()[0])
        self.unindex(meeting_id, sid)
        return deleted

    @redis_errors
    def forget(self, meeting_id: str, sid: str) -> bool:
        """Drop the index entries of a segment whose audio key is gone; True if it was still
        indexed, that is, its audio expired before a worker took it (a segment transcribed
        or purged leaves no index entry)."""
        pipe = self.r.pipeline(transaction=True)
        self._forget(pipe, meeting_id, sid)
        indexed = bool(pipe.execute()[0])
        self.unindex(meeting_id, sid)
        return indexed

    @staticmethod
    def _forget(pipe: Any, meeting_id: str, sid: str) -> None:
        """In ``pipe`` (the meeting's slot): the segment leaves the meeting's index and
        lease; :meth:`unindex` then takes it out of ``ss:pending``."""
        pipe.zrem(schema.meeting_audio(meeting_id), sid)
        pipe.delete(schema.lease(meeting_id, sid))

    @redis_errors
    def unindex(self, meeting_id: str, sid: str) -> None:
        """Out of ``ss:pending``, after the meeting's own records changed (see :meth:`_index`).
        Looked at again after: a segment being stored lists itself before its audio is
        there, so an entry dropped meanwhile as pointing at nothing is put back."""
        member = schema.pending_member(meeting_id, sid)
        if self.r.zrem(schema.PENDING, member) and self.r.exists(schema.audio(meeting_id, sid)):
            self.r.zadd(schema.PENDING, {member: time.time()}, nx=True)

    @redis_errors
    def claim(self, meeting_id: str, sid: str, owner: str, ttl: int) -> bool:
        """Lease a segment for a batch; False if another worker holds it."""
        key = schema.lease(meeting_id, sid)
        return (
            bool(self.r.set(key, owner, nx=True, ex=_lease(ttl)))
            or self.r.get(key) == owner.encode()
        )

    @redis_errors
    def release(self, claims: list[tuple[str, str]], owner: str) -> None:
        """Give back leases ``owner`` still holds (a batch that failed part-way)."""
        for meeting_id, sid in claims:
            self._release(keys=[schema.lease(meeting_id, sid)], args=[owner])

    @redis_errors
    def claim_pending(self, owner: str, n: int, ttl: int, look: int = 64) -> list[tuple[str, str]]:
        """Lease up to ``n`` of the oldest pending segments (of any meeting)."""
        claimed: list[tuple[str, str]] = []
        for member in self.r.zrange(schema.PENDING, 0, look - 1):
            if len(claimed) >= n:
                break
            meeting_id, sid = schema.parse_pending_member(as_str(member))
            if self.r.set(schema.lease(meeting_id, sid), owner, nx=True, ex=_lease(ttl)):
                claimed.append((meeting_id, sid))
        return claimed

    @redis_errors
    def pending_sizes(self, look: int = 64) -> list[tuple[str, str, int]]:
        """The oldest ``look`` pending segments no worker holds, oldest first, as (meeting,
        segment id, sealed size in bytes): a worker estimates their durations before it
        claims any (0: the audio is gone, expired or done meanwhile)."""
        members = [
            schema.parse_pending_member(as_str(m))
            for m in self.r.zrange(schema.PENDING, 0, look - 1)
        ]
        if not members:
            return []
        pipe = self.r.pipeline(transaction=False)
        for meeting_id, sid in members:
            pipe.strlen(schema.audio(meeting_id, sid))
            pipe.exists(schema.lease(meeting_id, sid))
        found = pipe.execute()
        return [
            (meeting_id, sid, int(size))
            for (meeting_id, sid), size, leased in zip(
                members, found[0::2], found[1::2], strict=True
            )
            if not leased
        ]

    @redis_errors
    def claim_each(
        self, claims: list[tuple[str, str]], owner: str, ttl: int
    ) -> list[tuple[str, str]]:
        """Lease those of ``claims`` no other worker holds; returns the ones leased."""
        if not claims:
            return []
        pipe = self.r.pipeline(transaction=False)
        for meeting_id, sid in claims:
            pipe.set(schema.lease(meeting_id, sid), owner, nx=True, ex=_lease(ttl))
        return [c for c, ok in zip(claims, pipe.execute(), strict=True) if ok]

    @redis_errors
    def pending_audio(self, meeting_id: str) -> list[str]:
        return [as_str(s) for s in self.r.zrange(schema.meeting_audio(meeting_id), 0, -1)]

    @redis_errors
    def complete(
        self,
        segment: SealedSegment,
        start_ms: int,
        ttl: int | None = None,
        outcome: str | None = None,
    ) -> None:
        """Store a sealed transcript and delete its audio, in one transaction: there is
        never a moment with both gone or (for a redelivered task) two transcripts. With
        ``outcome``, the segment's manifest outcome record is written in it too."""
        sid = segment.segment_id
        w = self.durable.client()
        pipe = w.pipeline(transaction=True)
        if outcome is not None:
            pipe.hset(schema.meeting_outcomes(segment.meeting_id), sid, outcome)
        pipe.set(
            schema.transcript(segment.meeting_id, sid),
            segment.sealed,
            ex=ttl or self.transcript_ttl,
        )
        pipe.zadd(schema.meeting_transcript(segment.meeting_id), {sid: start_ms})
        if not faults.on("keep-audio"):
            pipe.delete(schema.audio(segment.meeting_id, sid))
        self._forget(pipe, segment.meeting_id, sid)
        captions = schema.meeting_captions(segment.meeting_id)
        pipe.xadd(captions, {"sid": sid}, maxlen=CAPTION_HISTORY, approximate=True)
        pipe.expire(captions, ttl or self.transcript_ttl)
        # the final replaces the utterance's interim caption, which goes with it
        self.interims.clear_text(pipe, segment.meeting_id, segment.participant_id, segment.seq)
        pipe.execute()
        self.durable.confirm(w, f"the transcript of {segment.meeting_id}/{sid}")
        # out of ss:pending after (see _index): done, whatever audio a fault left
        self.r.zrem(schema.PENDING, schema.pending_member(segment.meeting_id, sid))

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
        return self.transcript_segments(meeting_id, sids)

    @redis_errors
    def transcript_ids(self, meeting_id: str) -> list[str]:
        """The ids of the meeting's transcript segments, by start time (the index only)."""
        return [as_str(s) for s in self.r.zrange(schema.meeting_transcript(meeting_id), 0, -1)]

    @redis_errors
    def transcript_segments(self, meeting_id: str, sids: list[str]) -> list[SealedSegment]:
        """Those of ``sids`` still stored, in the order given."""
        if not sids:
            return []
        blobs = self.r.mget([schema.transcript(meeting_id, s) for s in sids])
        out = []
        for sid, blob in zip(sids, blobs, strict=True):
            if blob is not None:
                participant, seq = parse_segment_id(sid)
                out.append(SealedSegment(meeting_id, participant, seq, as_bytes(blob)))
        return out


def _lease(ttl: int) -> int | None:
    """A batch lease lapses after ``ttl`` seconds (never, with the ``worker-owns-work``
    fault: then a killed worker's batch stays taken for good)."""
    return None if faults.on("worker-owns-work") else ttl
