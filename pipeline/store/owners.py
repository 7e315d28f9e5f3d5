"""Which API process holds a meeting's WHIP sessions: one string per meeting, its base URL.

Crosstalk can only be compared between tracks of one process, so the first process to open a
meeting's WHIP room records itself here (with a lease renewed while it holds the room), and
another process that gets an offer for the meeting redirects it there
(:mod:`pipeline.capture.whip`). Only the owner renews or deletes its record, so two processes
never take a meeting from each other; a record whose process died lapses with its lease.
Each script touches that one key (the meeting's slot on a Redis Cluster).
"""

from __future__ import annotations

from pipeline.store import schema
from pipeline.store.connection import Redis, as_str, redis_errors

__all__ = ["WhipOwners"]

# Claim the meeting for ARGV[1] unless another process holds it; returns the holder.
_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then
  return held
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class WhipOwners:
    def __init__(self, r: Redis) -> None:
        self.r = r
        self._claim = r.register_script(_CLAIM)
        self._release = r.register_script(_RELEASE)

    @redis_errors
    def owner(self, meeting_id: str) -> str | None:
        raw = self.r.get(schema.whip_owner(meeting_id))
        return None if raw is None else as_str(raw)

    @redis_errors
    def claim(self, meeting_id: str, url: str, ttl: float) -> str:
        """Record ``url`` as the meeting's owner (or renew it) unless another holds it;
        returns the owner's URL (``url`` when claimed)."""
        held = self._claim(keys=[schema.whip_owner(meeting_id)], args=[url, int(ttl * 1000)])
        return as_str(held)

    @redis_errors
    def release(self, meeting_id: str, url: str) -> None:
        self._release(keys=[schema.whip_owner(meeting_id)], args=[url])
