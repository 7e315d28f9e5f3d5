"""Tenants, and the first of their API tokens (tokens: :mod:`pipeline.store.tokens`).

A tenant's record, token records, meeting index and announcements share its slot (the
tenant's hash tag); the index of every tenant (``ss:tenants``) and each token's lookup key
are in slots of their own. So on a Redis Cluster creating or deleting a tenant is a few
steps, ordered so that a crash between two leaves only an ``ss:tenants`` entry whose tenant
is gone (which :meth:`TenantStore.list` skips and drops) or a token record without its
lookup key (which never authenticates): never a tenant missing from the index, nor a token
that authenticates without its record.
"""

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
        info, token = self.tokens.prepare(tenant.id, FIRST_TOKEN, {Scope.ADMIN}, now=tenant.created)
        # Slots differ, so steps (see the module's doc): the index entry first (it points
        # at nothing until the record is there); then the record with its token's record,
        # in one transaction of the tenant's slot; then the token's lookup key, which makes
        # the token work only once its record is stored. The entry is added again with it:
        # a list() that found the entry before the record and dropped it (see _forget)
        # cannot then leave the tenant out of the index.
        self.r.sadd(schema.TENANTS, tenant.id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            schema.tenant(tenant.id),
            mapping={
                "name": tenant.name,
                "created": repr(tenant.created),
                "provider": key_provider,
            },
        )
        self.tokens.queue_record(pipe, info)
        pipe.execute()
        pipe = self.r.pipeline(transaction=False)  # two slots: nothing to hold together
        self.tokens.queue_lookup(pipe, info)
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
        """Every tenant. An index entry whose tenant is gone (a creation or deletion that
        stopped between its steps) is skipped, and dropped."""
        tenants = []
        for tenant_id in sorted(as_str(m) for m in self.r.smembers(schema.TENANTS)):
            try:
                tenants.append(self.get(tenant_id))
            except NotFound:
                self._forget(tenant_id)
        return tenants

    def _forget(self, tenant_id: str) -> None:
        """Drop ``ss:tenants``' entry for a tenant found without its record. A create may
        be between its steps (entry added, record not yet): so the record is looked for
        again after the entry is gone, and the entry put back if it is there now; a create
        that writes its record later adds the entry again itself (see :meth:`create`)."""
        self.r.srem(schema.TENANTS, tenant_id)
        if self.r.exists(schema.tenant(tenant_id)):
            self.r.sadd(schema.TENANTS, tenant_id)

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
        # Slots differ, so steps (see the module's doc): every token's lookup key first
        # (each in a slot of its own: the tokens stop working at once); then, in one
        # transaction of the tenant's slot, the token records with the tenant's record,
        # meeting index, sockets and announcements; its ss:tenants entry last (removed
        # after what it points at). A crash between leaves token records that no longer
        # authenticate, or an entry that list() drops.
        self.tokens.delete_lookups(tenant_id, w)
        pipe = w.pipeline(transaction=True)
        pipe.delete(schema.tenant_tokens(tenant_id), schema.tenant(tenant_id))
        pipe.delete(schema.tenant_meetings(tenant_id), schema.sockets_tenant(tenant_id))
        pipe.delete(schema.tenant_announcements(tenant_id))
        pipe.execute()
        w.srem(schema.TENANTS, tenant_id)
        self.durable.confirm(w, f"tenant {tenant_id} deleted")
