"""Tenants, and the first of their API tokens (tokens: :mod:`pipeline.store.tokens`)."""

from __future__ import annotations

import builtins
import secrets
import time

from pipeline import ids
from pipeline.errors import InvalidInput, NotFound
from pipeline.models import Scope, Tenant
from pipeline.store import schema
from pipeline.store.connection import Durable, Redis, as_bytes, as_str, redis_errors
from pipeline.store.tokens import FIRST_TOKEN, TOKEN_PREFIX, TokenStore

__all__ = ["TOKEN_PREFIX", "TenantStore"]


class TenantStore:
    def __init__(self, r: Redis, durable: Durable | None = None) -> None:
        self.r = r
        self.durable = durable if durable is not None else Durable(r)
        self.tokens = TokenStore(r)

    @redis_errors
    def create(self, name: str, key_provider: str = "local") -> tuple[Tenant, str]:
        """A new tenant and its first API token, an ``admin`` one (shown once, stored
        hashed)."""
        name = name.strip() if isinstance(name, str) else ""
        if not name or len(name) > 200 or not name.isprintable():
            raise InvalidInput("tenant name must be 1-200 printable characters")
        tenant = Tenant(
            id="t_" + secrets.token_hex(8),
            name=name,
            created=time.time(),
            key_provider=key_provider,
        )
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            schema.tenant(tenant.id),
            mapping={
                "name": tenant.name,
                "created": repr(tenant.created),
                "provider": key_provider,
            },
        )
        _, token = self.tokens.add(pipe, tenant.id, FIRST_TOKEN, {Scope.ADMIN}, now=tenant.created)
        pipe.sadd(schema.TENANTS, tenant.id)
        pipe.execute()
        return tenant, token

    @redis_errors
    def get(self, tenant_id: str) -> Tenant:
        tenant_id = ids.tenant_id(tenant_id)  # NotFound for a malformed id
        raw = self.r.hgetall(schema.tenant(tenant_id))
        if not raw:
            raise NotFound(f"no tenant {tenant_id}")

        def ttl(field: bytes) -> int | None:
            value = raw.get(field)
            return int(value) if value else None

        return Tenant(
            tenant_id,
            as_str(raw[b"name"]),
            float(raw[b"created"]),
            raw.get(b"revoked") == b"1",
            as_str(raw.get(b"provider", b"local")),
            ttl(b"transcript_ttl"),
            ttl(b"audio_ttl"),
        )

    @redis_errors
    def set_retention(
        self, tenant_id: str, transcript_ttl: int | None, audio_ttl: int | None
    ) -> None:
        for field, value in (("transcript_ttl", transcript_ttl), ("audio_ttl", audio_ttl)):
            if value is not None:
                self.r.hset(schema.tenant(tenant_id), field, value)

    @redis_errors
    def set_key_provider(self, tenant_id: str, provider: str) -> None:
        self.r.hset(schema.tenant(tenant_id), "provider", provider)

    @redis_errors
    def mark_revoked(self, tenant_id: str) -> None:
        """Set the kill switch, then wake every bot capturing one of the tenant's meetings."""
        w = self.durable.client()
        w.hset(schema.tenant(tenant_id), "revoked", 1)
        self.durable.confirm(w, f"the revocation of tenant {tenant_id}")
        for meeting_id in self.r.sscan_iter(schema.tenant_meetings(tenant_id), count=500):
            self.r.publish(schema.meeting_events(as_str(meeting_id)), "policy")

    @redis_errors
    def list(self) -> builtins.list[Tenant]:
        ids = sorted(as_str(m) for m in self.r.smembers(schema.TENANTS))
        return [self.get(t) for t in ids]

    @redis_errors
    def authenticate(self, token: str) -> Tenant:
        """The tenant a token belongs to, whatever its scopes; :class:`AuthenticationFailed`
        otherwise (see :meth:`TokenStore.authenticate`)."""
        tenant_id, _ = self.tokens.authenticate(token)
        return self.get(tenant_id)

    @redis_errors
    def announcement(self, tenant_id: str, kind: str) -> bytes | None:
        """The tenant's own spoken announcement for ``kind`` (16 kHz mono PCM), or None."""
        raw = self.r.hget(schema.tenant_announcements(tenant_id), kind)
        return None if raw is None else as_bytes(raw)

    @redis_errors
    def announcements(self, tenant_id: str) -> builtins.list[str]:
        """The kinds the tenant has its own announcement for."""
        return sorted(as_str(k) for k in self.r.hkeys(schema.tenant_announcements(tenant_id)))

    @redis_errors
    def set_announcement(self, tenant_id: str, kind: str, pcm: bytes | None) -> None:
        """Keep the tenant's own announcement for ``kind``; None goes back to the default."""
        key = schema.tenant_announcements(tenant_id)
        if pcm is None:
            self.r.hdel(key, kind)
        else:
            self.r.hset(key, kind, pcm)

    @redis_errors
    def delete(self, tenant_id: str) -> None:
        """Remove the tenant, its tokens and its meeting index (meetings are deleted
        first)."""
        w = self.durable.client()
        pipe = w.pipeline(transaction=True)
        self.tokens.delete_all(pipe, tenant_id)
        pipe.delete(schema.tenant(tenant_id), schema.tenant_meetings(tenant_id))
        pipe.delete(schema.sockets_tenant(tenant_id), schema.tenant_announcements(tenant_id))
        pipe.srem(schema.TENANTS, tenant_id)
        pipe.execute()
        self.durable.confirm(w, f"tenant {tenant_id} deleted")
