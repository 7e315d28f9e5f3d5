"""A tenant's named API tokens, with scopes and an optional expiry, stored only as SHA-256.

``ss:token:{digest}`` maps a token to its tenant (it expires with the token, so Redis itself
forgets an expired one); ``ss:tenant:{t}:tokens`` holds each token's record (id, name,
scopes, created, expiry) under its digest. The token is shown once, when made or rotated.

Tenants made before named tokens have one token, recorded only as ``token_key`` in the
tenant's hash. It keeps working as an ``admin`` token named ``initial``: the first time any
of the tenant's tokens is used, listed or changed, its record is written
(:meth:`TokenStore.migrate`) and ``token_key`` removed.

The lookup key and the record live in different slots (``ss:token:...`` has no tag; the
record is in the tenant's), so on a Redis Cluster no transaction holds both: each write of
a token is two steps, ordered so that a crash between them never leaves a lookup key that
authenticates without its record. A token is made record first, lookup key last (it works
only once it is whole); it is revoked lookup key first (it stops working at once), record
after. So a crash can leave only a record whose lookup key is gone (listed, never
authenticating: revoking it again removes it), which every reader treats as a token that
does not work.
"""

from __future__ import annotations

import builtins
import json
import secrets
import time
from collections.abc import Iterable

from redis.client import Pipeline

from pipeline.errors import AuthenticationFailed, Conflict, NotFound, QuotaExceeded
from pipeline.models import ApiToken, Scope
from pipeline.store import schema
from pipeline.store.connection import Redis, as_str, redis_errors

__all__ = ["FIRST_TOKEN", "MAX_TOKENS", "TOKEN_PREFIX", "TokenStore", "new_token"]

TOKEN_PREFIX = "sst_"  # noqa: S105 - a prefix, not a secret
#: tokens one tenant may hold (expired ones count until revoked)
MAX_TOKENS = 50
#: the name of the admin token ``tenant create`` prints (and of a migrated legacy token)
FIRST_TOKEN = "initial"  # noqa: S105 - a name, not a secret


def new_token() -> str:
    """A fresh API token: 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _new_id() -> str:
    return "tk_" + secrets.token_hex(8)


def record(token: ApiToken) -> str:
    return json.dumps(
        {
            "id": token.id,
            "name": token.name,
            "scopes": sorted(token.scopes),
            "created": token.created,
            "expires": token.expires,
            "lifetime": token.lifetime,
        },
        separators=(",", ":"),
    )


def _parse(tenant_id: str, digest: str, raw: object) -> ApiToken:
    doc = json.loads(as_str(raw))
    return ApiToken(
        id=doc["id"],
        tenant_id=tenant_id,
        name=doc["name"],
        scopes=frozenset(Scope(s) for s in doc["scopes"]),
        created=float(doc["created"]),
        expires=doc.get("expires"),
        lifetime=doc.get("lifetime"),
        digest=digest,
    )


class TokenStore:
    def __init__(self, r: Redis) -> None:
        self.r = r

    def prepare(
        self,
        tenant_id: str,
        name: str,
        scopes: Iterable[Scope],
        lifetime: int | None = None,
        now: float | None = None,
        token_id: str | None = None,
    ) -> tuple[ApiToken, str]:
        """A new token and its record, written nowhere yet: queue the record with
        :meth:`queue_record`, then (in a later step) the lookup key with
        :meth:`queue_lookup`. The caller shows the token once."""
        now = time.time() if now is None else now
        token = new_token()
        info = ApiToken(
            id=token_id or _new_id(),
            tenant_id=tenant_id,
            name=name,
            scopes=frozenset(scopes),
            created=now,
            expires=None if lifetime is None else now + lifetime,
            lifetime=lifetime,
            digest=schema.token_digest(token),
        )
        return info, token

    @staticmethod
    def queue_record(pipe: Pipeline | Redis, info: ApiToken) -> None:
        """Write (or queue on ``pipe``) the token's record (the tenant's slot)."""
        pipe.hset(schema.tenant_tokens(info.tenant_id), info.digest, record(info))

    @staticmethod
    def queue_lookup(pipe: Pipeline | Redis, info: ApiToken) -> None:
        """Write (or queue on ``pipe``) the token's lookup key (a slot of its own), which
        makes it authenticate: only once its record is stored (see the module's doc)."""
        key = schema.token_by_digest(info.digest)
        if info.expires is None:
            pipe.set(key, info.tenant_id)
        else:
            pipe.set(key, info.tenant_id, pxat=int(info.expires * 1000))

    @redis_errors
    def create(
        self,
        tenant_id: str,
        name: str,
        scopes: Iterable[Scope],
        lifetime: int | None = None,
        now: float | None = None,
    ) -> tuple[ApiToken, str]:
        """A new token of ``tenant_id``; :class:`QuotaExceeded` beyond :data:`MAX_TOKENS`."""
        self.migrate(tenant_id)
        if self.r.hlen(schema.tenant_tokens(tenant_id)) >= MAX_TOKENS:
            raise QuotaExceeded(
                f"a tenant holds at most {MAX_TOKENS} tokens: revoke one before making another"
            )
        info, token = self.prepare(tenant_id, name, scopes, lifetime, now)
        # Two slots, two steps: the record, then the lookup key that makes the token work
        # (a crash between leaves a record that never authenticates; see the module's doc).
        self.queue_record(self.r, info)
        self.queue_lookup(self.r, info)
        return info, token

    @redis_errors
    def migrate(self, tenant_id: str) -> None:
        """Give a tenant made before named tokens its token's record: an admin token."""
        legacy = self.r.hget(schema.tenant(tenant_id), "token_key")
        if not legacy:
            return
        digest = schema.digest_of_token_key(as_str(legacy))
        created = self.r.hget(schema.tenant(tenant_id), "created")
        info = ApiToken(
            _new_id(),
            tenant_id,
            FIRST_TOKEN,
            frozenset({Scope.ADMIN}),
            float(created) if created else time.time(),
            digest=digest,
        )
        pipe = self.r.pipeline(transaction=True)
        pipe.hsetnx(schema.tenant_tokens(tenant_id), digest, record(info))
        pipe.hdel(schema.tenant(tenant_id), "token_key")
        pipe.execute()

    @redis_errors
    def list(self, tenant_id: str) -> builtins.list[ApiToken]:
        """Every token of the tenant (expired ones too, until revoked), oldest first."""
        self.migrate(tenant_id)
        raw = self.r.hgetall(schema.tenant_tokens(tenant_id))
        tokens = [_parse(tenant_id, as_str(d), v) for d, v in raw.items()]
        return sorted(tokens, key=lambda t: (t.created, t.id))

    def get(self, tenant_id: str, token_id: str) -> ApiToken:
        for token in self.list(tenant_id):
            if token.id == token_id:
                return token
        raise NotFound(f"no token {token_id}")

    @redis_errors
    def by_digest(self, tenant_id: str, digest: str, now: float | None = None) -> ApiToken | None:
        """The tenant's token with this digest, if it still works."""
        if not self.r.exists(schema.token_by_digest(digest)):
            return None
        raw = self.r.hget(schema.tenant_tokens(tenant_id), digest)
        if raw is None:
            self.migrate(tenant_id)
            raw = self.r.hget(schema.tenant_tokens(tenant_id), digest)
        info = None if raw is None else _parse(tenant_id, digest, raw)
        if info is None or info.expired(time.time() if now is None else now):
            return None
        return info

    @redis_errors
    def revoke(self, tenant_id: str, token_id: str, now: float | None = None) -> ApiToken:
        """Delete a token at once. The last admin token that has not expired is kept
        (:class:`Conflict`): without one nobody could manage the tenant's keys or tokens."""
        now = time.time() if now is None else now
        tokens = self.list(tenant_id)
        token = next((t for t in tokens if t.id == token_id), None)
        if token is None:
            raise NotFound(f"no token {token_id}")
        others = [
            t for t in tokens if Scope.ADMIN in t.scopes and not t.expired(now) and t is not token
        ]
        if Scope.ADMIN in token.scopes and not token.expired(now) and not self._working(others):
            raise Conflict(
                "this is the tenant's last admin token: make another admin token first "
                "(or rotate this one)"
            )
        # Two slots, two steps: the lookup key first (the token stops working at once),
        # then the record (a crash between leaves a record that no longer authenticates,
        # still listed: revoking it again removes it).
        self.r.delete(schema.token_by_digest(token.digest))
        self.r.hdel(schema.tenant_tokens(tenant_id), token.digest)
        return token

    @redis_errors
    def rotate(
        self, tenant_id: str, token_id: str, now: float | None = None
    ) -> tuple[ApiToken, str]:
        """A new secret for the token (same id, name and scopes, and as long a lifetime as
        it was made with); the old one stops working at once."""
        old = self.get(tenant_id, token_id)
        info, token = self.prepare(tenant_id, old.name, old.scopes, old.lifetime, now, old.id)
        # Three steps over two slots: the old lookup key goes first (the old secret stops
        # working at once); then, in one transaction of the tenant's slot, the old record is
        # replaced by the new; the new lookup key comes last. A crash between leaves the
        # token's record with no lookup key (it authenticates with neither secret): rotating
        # it again, or revoking it, finishes.
        self.r.delete(schema.token_by_digest(old.digest))
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(schema.tenant_tokens(tenant_id), old.digest)
        self.queue_record(pipe, info)
        pipe.execute()
        self.queue_lookup(self.r, info)
        return info, token

    @redis_errors
    def authenticate(self, token: str, now: float | None = None) -> tuple[str, ApiToken]:
        """The tenant id and record of ``token``; :class:`AuthenticationFailed` for a token
        that is malformed, unknown, revoked or expired."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            raise AuthenticationFailed("the API token is malformed")
        digest = schema.token_digest(token)
        tenant_id = self.r.get(schema.token_by_digest(digest))
        if tenant_id is None:
            raise AuthenticationFailed("the API token is not valid")
        tid = as_str(tenant_id)
        raw = self.r.hget(schema.tenant_tokens(tid), digest)
        if raw is None:
            self.migrate(tid)
            raw = self.r.hget(schema.tenant_tokens(tid), digest)
            if raw is None:
                # Revoked meanwhile, or a lookup key left without its record (a token made
                # while its tenant was deleted). A record is written before its lookup key
                # and removed after it, so this lookup key can never work again: drop it.
                self.r.delete(schema.token_by_digest(digest))
                raise AuthenticationFailed("the API token is not valid")
        info = _parse(tid, digest, raw)
        if info.expired(time.time() if now is None else now):
            raise AuthenticationFailed("the API token is not valid")
        return tid, info

    @redis_errors
    def valid(self, held: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """For each ``(tenant id, token digest)``, why it no longer authenticates: "" while
        the token exists and the tenant's key is not revoked, else "token" (revoked,
        rotated or expired, or the tenant erased) or "revoked" (the tenant's key was)."""
        pairs = builtins.list(dict.fromkeys(held))
        pipe = self.r.pipeline(transaction=False)
        for tenant_id, digest in pairs:
            pipe.exists(schema.token_by_digest(digest))
            pipe.hget(schema.tenant(tenant_id), "revoked")
        replies = pipe.execute()
        out: dict[tuple[str, str], str] = {}
        for i, pair in enumerate(pairs):
            exists, revoked = replies[2 * i], replies[2 * i + 1]
            out[pair] = "" if exists and revoked != b"1" else "token" if not exists else "revoked"
        return out

    def _working(self, tokens: Iterable[ApiToken]) -> builtins.list[ApiToken]:
        """Those of ``tokens`` whose lookup key is still there (a record can outlive its
        lookup key when a revocation or rotation stopped between its two steps)."""
        tokens = builtins.list(tokens)
        if not tokens:
            return []
        pipe = self.r.pipeline(transaction=False)
        for t in tokens:
            pipe.exists(schema.token_by_digest(t.digest))
        return [t for t, exists in zip(tokens, pipe.execute(), strict=True) if exists]

    @redis_errors
    def delete_lookups(self, tenant_id: str, client: Redis | None = None) -> None:
        """Delete the lookup key of every token of the tenant (each in a slot of its own):
        its tokens stop working at once. The records stay: the tenant's deletion removes
        them after, with the rest of the tenant's slot (see :meth:`TenantStore.delete`)."""
        w = self.r if client is None else client
        keys = [
            schema.token_by_digest(as_str(d)) for d in self.r.hkeys(schema.tenant_tokens(tenant_id))
        ]
        legacy = self.r.hget(schema.tenant(tenant_id), "token_key")
        if legacy:
            keys.append(as_str(legacy))
        if not keys:
            return
        pipe = w.pipeline(transaction=False)  # one slot each: nothing to hold together
        for key in keys:
            pipe.delete(key)
        pipe.execute()
