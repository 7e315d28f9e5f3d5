"""Bots: join requests, which bot service runs which meeting's bot, and each bot's state.

The API and the CLI only write requests here; a ``sealscribe bots`` process takes them. So
either side can restart without dropping a meeting: a bot service that starts picks up every
meeting in ``wanted`` that no live service holds a lease on.

A bot's record and lease are in its meeting's slot (on a Redis Cluster), the tenant's bots in
the tenant's, ``wanted`` and the request list in slots of their own. A write across them goes
in single-slot steps, ordered as :mod:`pipeline.store.schema` says: an index entry (``wanted``,
the tenant's bots) is added before what it points at and removed after, so a crash between
steps leaves at most an entry that points at nothing, which readers skip and drop. A reader's
drop can fall between a writer's steps, so the reader looks again after dropping (and puts
back an entry whose target appeared), and the writer adds its entries again once its target
is written: whichever goes last leaves the entry in place.
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
# Count a meeting among its tenant's bots unless the tenant already has ARGV[2] bots wanted
# (0: no limit): checked and added at once, in the tenant's slot. KEYS: tenant bots.
# ARGV: meeting id, limit.
_ADMIT = """
local limit = tonumber(ARGV[2])
if limit > 0 and redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0
    and redis.call('SCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[1])
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
        self._admit = r.register_script(_ADMIT)

    @redis_errors
    def request_join(
        self, meeting_id: str, tenant_id: str, target: bytes, described: str, limit: int = 0
    ) -> BotStatus | None:
        """Ask for a bot in the meeting at ``target`` (the join URL as the bot service alone
        can open it: sealed; ``described`` is what is shown). None (nothing asked) if the
        tenant already has ``limit`` bots wanted (0: no limit): checked and counted in one
        step (in the tenant's slot), so requests from every API process cannot pass the
        limit together.

        In single-slot steps (see the module's docstring): the meeting goes into ``wanted``
        first, then the tenant's set is pruned of meetings no longer wanted (so a bot that
        ended by any path, left, failed or its meeting deleted, stops counting without
        bookkeeping of its own) and the limit checked in the tenant's slot; then the bot's
        record is written, the entries added again, and a bot service woken. ``wanted``
        goes before the tenant's set so that a prune, which removes meetings not wanted,
        can never take a meeting admitted here for one that ended."""
        now = time.time()
        fields: dict[FieldT, EncodableT] = {
            "state": BotState.REQUESTED.value,
            "reason": "",
            "target": base64.b64encode(target).decode(),
            "described": described,
            "since": repr(now),
            "participants": "[]",
        }
        counted = schema.tenant_bots(tenant_id)
        added = self.r.sadd(schema.BOTS_WANTED, meeting_id)
        self._prune(counted)
        if not self._admit(keys=[counted], args=[meeting_id, limit]):
            if added:  # not asked after all (an entry already there is another bot's)
                self.r.srem(schema.BOTS_WANTED, meeting_id)
            return None
        pipe = self.r.pipeline(transaction=True)  # the record: the meeting's slot
        pipe.delete(schema.bot(meeting_id))
        pipe.hset(schema.bot(meeting_id), mapping=fields)
        pipe.execute()
        # again, now that the record is there: a reader (wanted()) that found the entry
        # without its record may have dropped it, and a prune that saw it dropped may have
        # taken the meeting out of the tenant's count
        self.r.sadd(schema.BOTS_WANTED, meeting_id)
        self.r.sadd(counted, meeting_id)
        self.r.lpush(schema.BOTS_REQUESTS, meeting_id)  # last: the record is there to read
        return BotStatus(meeting_id, BotState.REQUESTED, described, now)

    def _prune(self, counted: str) -> None:
        """Take meetings no longer wanted out of a tenant's set (``counted``). A meeting
        asked for meanwhile (in ``wanted`` again between the two reads) goes back before
        anything is admitted against the count."""
        members = sorted(as_str(m) for m in self.r.smembers(counted))
        if not members:
            return
        found = self.r.smismember(schema.BOTS_WANTED, members)
        ended = [m for m, wanted in zip(members, found, strict=True) if not wanted]
        if not ended:
            return
        self.r.srem(counted, *ended)
        again = self.r.smismember(schema.BOTS_WANTED, ended)
        back = [m for m, wanted in zip(ended, again, strict=True) if wanted]
        if back:
            self.r.sadd(counted, *back)

    @redis_errors
    def request_leave(self, meeting_id: str) -> None:
        self.r.srem(schema.BOTS_WANTED, meeting_id)
        # then wake the bot (a publish cannot be queued in a cluster's transaction)
        self.r.publish(schema.meeting_events(meeting_id), LEAVE)
        if not self.r.exists(schema.bot_owner(meeting_id)):
            self.set_state(meeting_id, BotState.LEFT)  # no bot runs it: nothing to wait for

    @redis_errors
    def wanted(self, meeting_id: str) -> bool:
        """Whether a bot is wanted in the meeting. An entry in ``wanted`` whose record has
        no join URL (its bot done or deleted: a crash between two steps) is not, and is
        dropped."""
        if not self.r.sismember(schema.BOTS_WANTED, meeting_id):
            return False
        if self.r.hexists(schema.bot(meeting_id), "target"):
            return True
        self.r.srem(schema.BOTS_WANTED, meeting_id)
        # a request_join() between its steps has written its record since: the entry stays
        if self.r.hexists(schema.bot(meeting_id), "target"):
            self.r.sadd(schema.BOTS_WANTED, meeting_id)
            return True
        return False

    @redis_errors
    def all_wanted(self) -> builtins.list[str]:
        """Every meeting in ``wanted``, as listed: check one with :meth:`wanted` before
        starting its bot (an entry can point at a bot that is done)."""
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
            pipe.hdel(schema.bot(meeting_id), "target")  # the pin is not kept past the call
        pipe.execute()
        if state.final:
            # out of ``wanted`` (a slot of its own) after the record: a crash in between
            # leaves an entry whose record has no join URL, which wanted() drops
            self.r.srem(schema.BOTS_WANTED, meeting_id)

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
        # the record (the meeting's slot), then its entry in ``wanted`` (see set_state)
        self.r.delete(schema.bot(meeting_id))
        self.r.srem(schema.BOTS_WANTED, meeting_id)


__all__ += ["LEAVE", "MEETING_ENDED"]
