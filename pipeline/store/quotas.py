"""Request-rate counters of the per-tenant quotas, shared by every API process.

A token bucket per tenant in Redis (``schema.tenant_rate``), taken from in one script that
reads Redis's own clock, so API processes on different hosts share one bucket and one time.
The counts of meetings and bots are kept where those records live (``MeetingStore.create``,
``BotStore.request_join``); the rules are in ``pipeline.services.quotas``.

The bucket is one key (the tenant's slot on a Redis Cluster), so the script runs there as
on one Redis.
"""

from __future__ import annotations

from pipeline.store import schema
from pipeline.store.connection import Redis, as_str, redis_errors

__all__ = ["QuotaStore"]

# KEYS[1]: the bucket; ARGV: rate (tokens per second), capacity. Returns the seconds to wait
# before a token is there (0: one was taken), as text (Lua numbers would be truncated).
_TAKE = """
local rate, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]), tonumber(b[2])
if tokens == nil or at == nil or at > now then
  tokens, at = capacity, now
end
tokens = math.min(capacity, tokens + (now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
  'at', string.format('%.6f', now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return string.format('%.6f', wait)
"""


class QuotaStore:
    def __init__(self, r: Redis) -> None:
        self.r = r
        self._take = r.register_script(_TAKE)

    @redis_errors
    def take_request(self, tenant_id: str, rate: int, capacity: int) -> float:
        """Take one request from the tenant's bucket (``capacity`` requests, refilled at
        ``rate`` per second): 0.0 if taken, else the seconds until one is there."""
        wait = self._take(keys=[schema.tenant_rate(tenant_id)], args=[rate, capacity])
        return float(as_str(wait))

    @redis_errors
    def forget_tenant(self, tenant_id: str) -> None:
        # both carry the tenant's hash tag: one slot on a cluster, so one command still
        self.r.delete(schema.tenant_rate(tenant_id), schema.tenant_bots(tenant_id))
