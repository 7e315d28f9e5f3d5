"""Bots: join requests, which bot service runs which meeting's bot, and each bot's state.

The API and the CLI only write requests here; a ``sealscribe bots`` process takes them. So
either side can restart without dropping a meeting: a bot service that starts picks up every
meeting in ``wanted`` that no live service holds a lease on.
"""

from __future__ import annotations

import base64
import builtins
import json
import time

from redis.typing import EncodableT, FieldT

from pipeline.models import BotState, BotStatus
from pipeline.store import schema
from pipeline.store.connection import Redis, as_bytes, as_str, redis_errors
from pipeline.store.meetings import MEETING_ENDED

__all__ = ["BotStore"]

LEAVE = "leave"

# Renew a lease only while we still hold it.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# Ask for a bot in a meeting unless its tenant already has ARGV[2] bots wanted (0: no limit).
# The tenant's set is pruned of meetings no longer wanted first, so a bot that ended by any
# path (left, failed, its meeting deleted) stops counting without bookkeeping of its own.
# KEYS: bot hash, wanted, requests, tenant bots. ARGV: meeting id, limit, then the hash's
# field/value pairs.
_REQUEST_JOIN = """
for _, m in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if redis.call('SISMEMBER', KEYS[2], m) == 0 then
    redis.call('SREM', KEYS[4], m)
  end
end
local limit = tonumber(ARGV[2])
if limit > 0 and redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 0
    and redis.call('SCARD', KEYS[4]) >= limit then
  return 0
end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[1])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class BotStore:
    def __init__(self, r: Redis) -> None:
        self.r = r
        self._renew = r.register_script(_RENEW)
        self._release = r.register_script(_RELEASE)
        self._request_join = r.register_script(_REQUEST_JOIN)

    @redis_errors
    def request_join(
        self, meeting_id: str, tenant_id: str, target: bytes, described: str, limit: int = 0
    ) -> BotStatus | None:
        """Ask for a bot in the meeting at ``target`` (the join URL as the bot service alone
        can open it: sealed; ``described`` is what is shown). None (nothing asked) if the
        tenant already has ``limit`` bots wanted (0: no limit): checked and asked atomically,
        across every API process and bot service."""
        now = time.time()
        fields = {
            "state": BotState.REQUESTED.value,
            "reason": "",
            "target": base64.b64encode(target).decode(),
            "described": described,
            "since": repr(now),
            "participants": "[]",
        }
        args: list[str | int] = [meeting_id, limit]
        for field, value in fields.items():
            args += [field, value]
        keys = [
            schema.bot(meeting_id),
            schema.BOTS_WANTED,
            schema.BOTS_REQUESTS,
            schema.tenant_bots(tenant_id),
        ]
        if not self._request_join(keys=keys, args=args):
            return None
        return BotStatus(meeting_id, BotState.REQUESTED, described, now)

    @redis_errors
    def request_leave(self, meeting_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.srem(schema.BOTS_WANTED, meeting_id)
        pipe.publish(schema.meeting_events(meeting_id), LEAVE)
        pipe.execute()
        if not self.r.exists(schema.bot_owner(meeting_id)):
            self.set_state(meeting_id, BotState.LEFT)  # no bot runs it: nothing to wait for

    @redis_errors
    def wanted(self, meeting_id: str) -> bool:
        return bool(self.r.sismember(schema.BOTS_WANTED, meeting_id))

    @redis_errors
    def all_wanted(self) -> builtins.list[str]:
        return sorted(as_str(m) for m in self.r.smembers(schema.BOTS_WANTED))

    @redis_errors
    def next_request(self, timeout: float) -> str | None:
        got = self.r.blpop([schema.BOTS_REQUESTS], timeout=timeout)
        return as_str(got[1]) if got else None

    @redis_errors
    def target(self, meeting_id: str) -> bytes | None:
        """The join URL as stored by :meth:`request_join` (sealed), or None once done."""
        raw = self.r.hget(schema.bot(meeting_id), "target")
        return base64.b64decode(as_bytes(raw)) if raw is not None else None

    @redis_errors
    def set_state(
        self,
        meeting_id: str,
        state: BotState,
        reason: str = "",
        participants: builtins.list[str] | None = None,
    ) -> None:
        fields: dict[FieldT, EncodableT] = {
            "state": state.value,
            "reason": reason,
            "since": repr(time.time()),
        }
        if participants is not None:
            fields["participants"] = json.dumps(participants)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(schema.bot(meeting_id), mapping=fields)
        if state.final:
            pipe.srem(schema.BOTS_WANTED, meeting_id)
            pipe.hdel(schema.bot(meeting_id), "target")  # the pin is not kept past the call
        pipe.execute()

    @redis_errors
    def set_participants(self, meeting_id: str, participants: builtins.list[str]) -> None:
        self.r.hset(schema.bot(meeting_id), "participants", json.dumps(participants))

    @redis_errors
    def get(self, meeting_id: str) -> BotStatus | None:
        raw = self.r.hgetall(schema.bot(meeting_id))
        if not raw:
            return None
        doc = {as_str(k): as_str(v) for k, v in raw.items()}
        return BotStatus(
            meeting_id,
            BotState(doc["state"]),
            doc.get("described", ""),
            float(doc.get("since", "0")),
            doc.get("reason", ""),
            tuple(json.loads(doc.get("participants", "[]"))),
        )

    @redis_errors
    def claim(self, meeting_id: str, owner: str, ttl: float) -> bool:
        return bool(self.r.set(schema.bot_owner(meeting_id), owner, nx=True, px=int(ttl * 1000)))

    @redis_errors
    def renew(self, meeting_id: str, owner: str, ttl: float) -> bool:
        return bool(self._renew(keys=[schema.bot_owner(meeting_id)], args=[owner, int(ttl * 1000)]))

    @redis_errors
    def release(self, meeting_id: str, owner: str) -> None:
        self._release(keys=[schema.bot_owner(meeting_id)], args=[owner])

    @redis_errors
    def delete(self, meeting_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.srem(schema.BOTS_WANTED, meeting_id)
        pipe.delete(schema.bot(meeting_id))
        pipe.execute()


__all__ += ["LEAVE", "MEETING_ENDED"]
