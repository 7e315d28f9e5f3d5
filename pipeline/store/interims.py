"""Interim captions: the newest sealed audio of each participant's utterance in progress, the
newest sealed caption text of it, and counts of what became of them. Only ciphertext is
stored, and only briefly.

One slot per participant, not one entry per interim: capture overwrites the slot about once a
second while someone speaks, so under a backlog only the newest interim is ever transcribed
and the older ones are gone untranscribed (counted ``superseded``, as is one a final made
moot). ``ss:interims:waiting`` lists the slots holding audio, so a worker can take several
participants' interims into one batch. Slots are keyed by utterance (its sequence number, the
final segment's) and number (``part``); nothing older than what a slot holds replaces it.

The caption text of an utterance goes, with every caption stream entry announcing it, when
that utterance's final transcript is stored (:meth:`InterimStore.clear_text`, called inside
:meth:`~pipeline.store.segments.SegmentStore.complete`'s transaction); an utterance whose
final never comes (switched off, opted out, too short) goes with its slot's TTL or the
switch.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline import faults
from pipeline.models import SealedSegment, segment_id
from pipeline.store import schema
from pipeline.store.connection import Redis, as_bytes, as_str, redis_errors

__all__ = ["AUDIO_TTL", "TEXT_TTL", "InterimStore"]

#: seconds an interim's sealed audio may wait for a worker (it is worthless later)
AUDIO_TTL = 60
#: seconds an interim caption is kept when no final replaces it
TEXT_TTL = 120

# "SEQ:PART:" + sealed blob; a slot takes only what is newer than it holds.
# KEYS: slot hash, counts hash
# ARGV: participant, seq, part, blob, ttl
_PUT_AUDIO = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local seq, part = tonumber(ARGV[2]), tonumber(ARGV[3])
if cur then
  local cs, cp = string.match(cur, '^(%d+):(%d+):')
  cs, cp = tonumber(cs), tonumber(cp)
  if cs > seq or (cs == seq and cp >= part) then return 0 end
  redis.call('HINCRBY', KEYS[2], 'superseded', 1)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3] .. ':' .. ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# KEYS: slot hash; ARGV: participant
_TAKE_AUDIO = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then redis.call('HDEL', KEYS[1], ARGV[1]) end
return cur
"""

# KEYS: slot hash, counts hash; ARGV: participant, seq -- drop the slot if it holds that
# utterance or an older one
_DROP_AUDIO = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
if tonumber(string.match(cur, '^(%d+):')) > tonumber(ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'superseded', 1)
return 1
"""

# KEYS: text hash, caption stream, the final transcript's key
# ARGV: participant, seq, part, blob, ttl, maxlen, utterance (segment) id
_PUT_TEXT = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local seq, part = tonumber(ARGV[2]), tonumber(ARGV[3])
local ekey = ARGV[1] .. '#e'
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local cs, cp = string.match(cur, '^(%d+):(%d+):')
  cs, cp = tonumber(cs), tonumber(cp)
  if cs > seq or (cs == seq and cp >= part) then return 0 end
  if cs ~= seq then
    local old = redis.call('HGET', KEYS[1], ekey)
    if old then
      for id in string.gmatch(old, '%S+') do redis.call('XDEL', KEYS[2], id) end
      redis.call('HDEL', KEYS[1], ekey)
    end
  end
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
  'sid', ARGV[7], 'kind', 'interim', 'part', ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3] .. ':' .. ARGV[4])
local entries = redis.call('HGET', KEYS[1], ekey)
redis.call('HSET', KEYS[1], ekey, entries and (entries .. ' ' .. id) or id)
redis.call('EXPIRE', KEYS[1], ARGV[5])
if redis.call('TTL', KEYS[2]) == -1 then redis.call('EXPIRE', KEYS[2], ARGV[5]) end
return 1
"""

# KEYS: text hash, caption stream; ARGV: participant, seq -- the final of SEQ landed
_CLEAR_TEXT = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
if tonumber(string.match(cur, '^(%d+):')) > tonumber(ARGV[2]) then return 0 end
local entries = redis.call('HGET', KEYS[1], ARGV[1] .. '#e')
if entries then
  for id in string.gmatch(entries, '%S+') do redis.call('XDEL', KEYS[2], id) end
end
redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. '#e')
return 1
"""


def _slot(meeting_id: str, participant_id: str, raw: Any) -> tuple[int, SealedSegment] | None:
    """``"SEQ:PART:" + blob`` -> (part, the sealed segment at SEQ)."""
    if raw is None:
        return None
    blob = as_bytes(raw)
    seq, part, sealed = blob.split(b":", 2)
    return int(part), SealedSegment(meeting_id, participant_id, int(seq), sealed)


class InterimStore:
    def __init__(self, r: Redis) -> None:
        self.r = r
        self._put_audio = r.register_script(_PUT_AUDIO)
        self._take_audio = r.register_script(_TAKE_AUDIO)
        self._put_text = r.register_script(_PUT_TEXT)

    @redis_errors
    def put_audio(self, sealed: SealedSegment, part: int) -> bool:
        """Hold ``sealed`` (interim ``part`` of the utterance at ``sealed.seq``) as the
        participant's newest interim; False if the slot already holds a newer one. An older
        interim still waiting there is overwritten untranscribed (counted ``superseded``)."""
        meeting_id, participant_id = sealed.meeting_id, sealed.participant_id
        # the waiting index (a slot of its own on a cluster) first: a crash before the
        # slot is written leaves an entry that points at nothing, which takers skip
        now = time.time()
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(schema.INTERIMS_WAITING, {schema.pending_member(meeting_id, participant_id): now})
        pipe.zremrangebyscore(schema.INTERIMS_WAITING, "-inf", now - AUDIO_TTL)
        pipe.execute()
        return bool(
            self._put_audio(
                keys=[schema.meeting_interim(meeting_id), schema.meeting_interims(meeting_id)],
                args=[participant_id, sealed.seq, part, sealed.sealed, AUDIO_TTL],
            )
        )

    @redis_errors
    def take_audio(self, meeting_id: str, participant_id: str) -> tuple[int, SealedSegment] | None:
        """Take (and remove) the participant's newest interim audio: (part, sealed), or
        None when another task took it, a final replaced it, or it expired."""
        raw = self._take_audio(keys=[schema.meeting_interim(meeting_id)], args=[participant_id])
        # then out of the waiting index (after: see put_audio)
        self.r.zrem(schema.INTERIMS_WAITING, schema.pending_member(meeting_id, participant_id))
        return _slot(meeting_id, participant_id, raw)

    @redis_errors
    def take_waiting(self, n: int) -> list[tuple[str, int, SealedSegment]]:
        """Take up to ``n`` more interims waiting, of any meetings, oldest first (to
        transcribe them in one batch): (meeting id, part, sealed) each. Their own tasks
        then find their slots empty."""
        taken = []
        popped: Any = self.r.zpopmin(schema.INTERIMS_WAITING, n)
        for member, _score in popped:
            meeting_id, participant_id = schema.parse_pending_member(as_str(member))
            slot = self.take_audio(meeting_id, participant_id)
            if slot is not None:
                taken.append((meeting_id, *slot))
        return taken

    def drop_audio(self, pipe: Any, meeting_id: str, participant_id: str, seq: int) -> None:
        """In ``pipe``: the final of utterance ``seq`` is stored, so an interim of it (or
        of an earlier one) still waiting is dropped untranscribed (counted ``superseded``)."""
        # EVAL, not EVALSHA: a node need not have the script cached when the transaction runs
        pipe.execute_command(  # (a cluster's pipeline has no eval())
            "EVAL",
            _DROP_AUDIO,
            2,
            schema.meeting_interim(meeting_id),
            schema.meeting_interims(meeting_id),
            participant_id,
            seq,
        )

    @redis_errors
    def put_text(self, sealed: SealedSegment, part: int, maxlen: int) -> bool:
        """Show ``sealed`` (the caption text of interim ``part``) to the meeting's caption
        followers; False (nothing stored) if the utterance's final is already stored or a
        newer interim of it is shown."""
        meeting_id, participant_id = sealed.meeting_id, sealed.participant_id
        sid = segment_id(participant_id, sealed.seq)
        return bool(
            self._put_text(
                keys=[
                    schema.meeting_interim_text(meeting_id),
                    schema.meeting_captions(meeting_id),
                    schema.transcript(meeting_id, sid),
                ],
                args=[participant_id, sealed.seq, part, sealed.sealed, TEXT_TTL, maxlen, sid],
            )
        )

    @redis_errors
    def get_text(self, meeting_id: str, participant_id: str) -> tuple[int, SealedSegment] | None:
        """The participant's interim caption shown now: (part, sealed), or None."""
        raw = self.r.hget(schema.meeting_interim_text(meeting_id), participant_id)
        return _slot(meeting_id, participant_id, raw)

    @redis_errors
    def get_texts(
        self, meeting_id: str, participant_ids: list[str]
    ) -> dict[str, tuple[int, SealedSegment]]:
        """The interim captions shown now for each of ``participant_ids`` that has one, in
        one round trip: participant -> (part, sealed)."""
        if not participant_ids:
            return {}
        raw = self.r.hmget(schema.meeting_interim_text(meeting_id), participant_ids)
        slots = {p: _slot(meeting_id, p, v) for p, v in zip(participant_ids, raw, strict=True)}
        return {p: slot for p, slot in slots.items() if slot is not None}

    def clear_text(self, pipe: Any, meeting_id: str, participant_id: str, seq: int) -> None:
        """In ``pipe``: the final of utterance ``seq`` is stored, so its interim caption
        (and any earlier one) and their caption stream entries go."""
        if faults.on("keep-interims"):
            return
        pipe.execute_command(  # EVAL: see drop_audio
            "EVAL",
            _CLEAR_TEXT,
            2,
            schema.meeting_interim_text(meeting_id),
            schema.meeting_captions(meeting_id),
            participant_id,
            seq,
        )

    @redis_errors
    def count(self, meeting_id: str, outcome: str, n: int = 1) -> None:
        """Count ``n`` interims that ended as ``outcome`` (for the privacy report)."""
        self.r.hincrby(schema.meeting_interims(meeting_id), outcome, n)

    @redis_errors
    def counts(self, meeting_id: str) -> dict[str, int]:
        raw = self.r.hgetall(schema.meeting_interims(meeting_id))
        return {as_str(k): int(v) for k, v in raw.items()}
