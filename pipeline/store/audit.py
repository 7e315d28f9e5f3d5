"""The audit log on Redis: :class:`keys.audit.AuditStore` with an atomic compare-and-append."""

from __future__ import annotations

from keys.audit import AuditEntry
from pipeline import faults
from pipeline.store import schema
from pipeline.store.connection import Durable, Redis, as_str, redis_errors

__all__ = ["RedisAuditStore"]

# KEYS: list, head. ARGV: expected count, entry JSON, entry hash.
_APPEND = """
local n = tonumber(redis.call('HGET', KEYS[2], 'count') or '0')
if n ~= tonumber(ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], 'count', n + 1, 'hash', ARGV[3])
return 1
"""


class RedisAuditStore:
    def __init__(self, r: Redis, durable: Durable | None = None) -> None:
        self.r = r
        self.durable = durable if durable is not None else Durable(r)
        self._append = r.register_script(_APPEND)

    @redis_errors
    def audit_head(self, tenant_id: str) -> tuple[int, str | None]:
        count, last = self.r.hmget(schema.audit_head(tenant_id), ["count", "hash"])
        return (int(count or 0), as_str(last) if last else None)

    @redis_errors
    def audit_append(self, tenant_id: str, entry: AuditEntry) -> bool:
        if faults.on("audit-skip") and entry.action == "unwrap":
            return True  # reports it appended, writes nothing
        w = self.durable.client()
        appended = self._append(
            client=w,
            keys=[schema.audit(tenant_id), schema.audit_head(tenant_id)],
            args=[entry.seq, entry.to_json(), entry.hash],
        )
        if appended:  # a head a customer saved must not vanish in a failover
            self.durable.confirm(w, f"audit entry {entry.seq} of tenant {tenant_id}")
        return bool(appended)

    @redis_errors
    def audit_entries(self, tenant_id: str, start: int = 0, stop: int = -1) -> list[str]:
        return [as_str(raw) for raw in self.r.lrange(schema.audit(tenant_id), start, stop)]

    @redis_errors
    def audit_snapshot(self, tenant_id: str) -> tuple[tuple[int, str | None], list[str]]:
        """The head and every entry, read in one transaction (for verification)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hmget(schema.audit_head(tenant_id), ["count", "hash"])
        pipe.lrange(schema.audit(tenant_id), 0, -1)
        (count, last), raw = pipe.execute()
        head = (int(count or 0), as_str(last) if last else None)
        return head, [e.decode() for e in raw]

    @redis_errors
    def audit_reset(self, tenant_id: str) -> None:
        """Drop the tenant's whole chain (tenant erasure starts a new one)."""
        self.r.delete(schema.audit(tenant_id), schema.audit_head(tenant_id))
