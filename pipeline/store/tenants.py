"""Tenants and their API tokens (stored only as SHA-256 hashes)."""

from __future__ import annotations

import builtins
import secrets
import time

from pipeline.errors import AuthenticationFailed, InvalidInput, NotFound
from pipeline.models import Tenant
from pipeline.store import schema
from pipeline.store.connection import Redis, as_str, redis_errors

__all__ = ["TenantStore"]

TOKEN_PREFIX = "sst_"  # noqa: S105 - a prefix, not a secret


class TenantStore:
    def __init__(self, r: Redis) -> None:
        self.r = r

    @redis_errors
    def create(self, name: str, key_provider: str = "local") -> tuple[Tenant, str]:
        """A new tenant and its API token (shown once, stored hashed)."""
        name = name.strip() if isinstance(name, str) else ""
        if not name or len(name) > 200 or not name.isprintable():
            raise InvalidInput("tenant name must be 1-200 printable characters")
        tenant = Tenant(
            id="t_" + secrets.token_hex(8),
            name=name,
            created=time.time(),
            key_provider=key_provider,
        )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            schema.tenant(tenant.id),
            mapping={
                "name": tenant.name,
                "created": repr(tenant.created),
                "provider": key_provider,
                "token_key": schema.token(token),
            },
        )
        pipe.set(schema.token(token), tenant.id)
        pipe.sadd(schema.TENANTS, tenant.id)
        pipe.execute()
        return tenant, token

    @redis_errors
    def get(self, tenant_id: str) -> Tenant:
        raw = self.r.hgetall(schema.tenant(tenant_id)) if isinstance(tenant_id, str) else {}
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
        self.r.hset(schema.tenant(tenant_id), "revoked", 1)
        for meeting_id in self.r.sscan_iter(schema.tenant_meetings(tenant_id), count=500):
            self.r.publish(schema.meeting_events(as_str(meeting_id)), "policy")

    @redis_errors
    def list(self) -> builtins.list[Tenant]:
        ids = sorted(as_str(m) for m in self.r.smembers(schema.TENANTS))
        return [self.get(t) for t in ids]

    @redis_errors
    def authenticate(self, token: str) -> Tenant:
        """The tenant a token belongs to; :class:`AuthenticationFailed` otherwise."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
            raise AuthenticationFailed("the API token is malformed")
        tenant_id = self.r.get(schema.token(token))
        if tenant_id is None:
            raise AuthenticationFailed("the API token is not valid")
        return self.get(as_str(tenant_id))

    @redis_errors
    def delete(self, tenant_id: str) -> None:
        """Remove the tenant, its token and its meeting index (meetings are deleted first)."""
        token_key = self.r.hget(schema.tenant(tenant_id), "token_key")
        pipe = self.r.pipeline(transaction=True)
        if token_key:
            pipe.delete(as_str(token_key))
        pipe.delete(schema.tenant(tenant_id), schema.tenant_meetings(tenant_id))
        pipe.srem(schema.TENANTS, tenant_id)
        pipe.execute()
