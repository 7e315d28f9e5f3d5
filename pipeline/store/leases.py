"""Things held open anywhere (WHIP sessions, caption sockets): how many each meeting and each
tenant has, across every API process, so that a cap holds whichever process a client reaches.

Each thing is a member of two sorted sets (its meeting's and its tenant's) scored by the time
its lease lapses. The process holding it renews the lease while it lives and removes it when
it ends; a process that dies stops renewing, and what it held stops counting once the leases
lapse. A claim counts and adds in one Lua script, so two processes cannot both take the last
place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from pipeline.store.connection import Redis, redis_errors

__all__ = ["MEETING_FULL", "TENANT_FULL", "CappedLeases"]

MEETING_FULL = "meeting"
TENANT_FULL = "tenant"

# KEYS: meeting set, tenant set. ARGV: item id, now, lease end, per meeting, per tenant,
# key TTL (ms). Returns 0 (claimed), 1 (the meeting is full) or 2 (the tenant is full).
_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 2 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 0
"""


class CappedLeases:
    """Leases counted per meeting and per tenant, under the keys ``meeting_key(t, m)`` and
    ``tenant_key(t)`` (from :mod:`pipeline.store.schema`: both carry the tenant's hash tag,
    so a claim's script runs in one slot on a cluster)."""

    def __init__(
        self, r: Redis, meeting_key: Callable[[str, str], str], tenant_key: Callable[[str], str]
    ) -> None:
        self.r = r
        self._meeting_key = meeting_key
        self._tenant_key = tenant_key
        self._claim = r.register_script(_CLAIM)

    @redis_errors
    def claim(
        self,
        tenant_id: str,
        meeting_id: str,
        item_id: str,
        per_meeting: int,
        per_tenant: int,
        lease: float,
        now: float | None = None,
    ) -> str:
        """Count ``item_id`` against its meeting and tenant for ``lease`` seconds, if
        both are below their caps. Returns "" when claimed, else :data:`MEETING_FULL` or
        :data:`TENANT_FULL`."""
        now = time.time() if now is None else now
        result = self._claim(
            keys=[self._meeting_key(tenant_id, meeting_id), self._tenant_key(tenant_id)],
            args=[item_id, now, now + lease, per_meeting, per_tenant, int(lease * 2000)],
        )
        return {0: "", 1: MEETING_FULL, 2: TENANT_FULL}[int(result)]

    @redis_errors
    def renew(
        self, items: Iterable[tuple[str, str, str]], lease: float, now: float | None = None
    ) -> None:
        """Extend the leases of live ``(tenant, meeting, item)``s. Only those still counted
        are renewed (``XX``): one released meanwhile is not brought back."""
        until = (time.time() if now is None else now) + lease
        pipe = self.r.pipeline(transaction=False)
        for tenant_id, meeting_id, item_id in items:
            for key in (self._meeting_key(tenant_id, meeting_id), self._tenant_key(tenant_id)):
                pipe.zadd(key, {item_id: until}, xx=True)
                pipe.pexpire(key, int(lease * 2000))
        pipe.execute()

    @redis_errors
    def release(self, tenant_id: str, meeting_id: str, item_id: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.zrem(self._meeting_key(tenant_id, meeting_id), item_id)
        pipe.zrem(self._tenant_key(tenant_id), item_id)
        pipe.execute()

    @redis_errors
    def count(self, tenant_id: str, meeting_id: str, now: float | None = None) -> tuple[int, int]:
        """(held for the meeting, held for the tenant) whose leases have not lapsed."""
        now = time.time() if now is None else now
        pipe = self.r.pipeline(transaction=False)
        pipe.zcount(self._meeting_key(tenant_id, meeting_id), f"({now}", "+inf")
        pipe.zcount(self._tenant_key(tenant_id), f"({now}", "+inf")
        meeting, tenant = pipe.execute()
        return int(meeting), int(tenant)
