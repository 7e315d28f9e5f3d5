"""Who may do what: signing in with a token (with a limit on failed tries per client
address), the scope rule, named tokens (create, list, revoke, rotate) and caption tickets.

The rule in one place: a token holds one or more scopes (:class:`pipeline.models.Scope`);
``admin`` holds every scope; an operation names the scopes any one of which lets it run
(:func:`require_scope`); everything else is :class:`InsufficientScope` (HTTP 403).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline import faults
from pipeline.errors import (
    AuthenticationFailed,
    InsufficientScope,
    InvalidInput,
    NotFound,
    QuotaExceeded,
)
from pipeline.models import ApiToken, Scope, Tenant
from pipeline.runtime import Runtime
from pipeline.services.meetings import get_meeting
from pipeline.store.tickets import Ticket

__all__ = [
    "MAX_LIFETIME",
    "MIN_LIFETIME",
    "Caller",
    "create_token",
    "issue_ticket",
    "list_tokens",
    "parse_duration",
    "parse_scopes",
    "redeem_ticket",
    "require_scope",
    "revoke_token",
    "rotate_token",
    "sign_in",
]

#: the shortest and longest lifetime a token may be given, in seconds
MIN_LIFETIME = 60
MAX_LIFETIME = 10 * 365 * 86400
_DURATION = re.compile(r"\A([0-9]{1,10})([smhd]?)\Z")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Caller:
    """A signed-in caller: the tenant, and the token it used."""

    tenant: Tenant
    token: ApiToken


def require_scope(caller: Caller, *scopes: Scope) -> None:
    """Let ``caller`` through if its token holds any of ``scopes`` (``admin`` holds all);
    else :class:`InsufficientScope`."""
    if faults.on("token-scopes-ignored") or caller.token.allows(*scopes):
        return
    needed = " or ".join(s.value for s in scopes)
    raise InsufficientScope(
        f"this token's scopes ({', '.join(sorted(caller.token.scopes))}) do not include "
        f"{needed}, which this operation needs"
    )


def _guard(rt: Runtime, client: str | None) -> None:
    """Refuse every attempt from ``client`` while it is over the failure limit."""
    if client is None or faults.on("auth-failures-unlimited"):
        return
    wait = rt.store.attempts.blocked(client, rt.settings.auth_failures)
    if wait:
        raise QuotaExceeded(
            f"too many failed authentications from this address: try again in {wait} s",
            retry_after=wait,
        )


def _failed(rt: Runtime, client: str | None) -> None:
    if client is not None and not faults.on("auth-failures-unlimited"):
        rt.store.attempts.failed(client)


def sign_in(rt: Runtime, token: str, client: str | None = None) -> Caller:
    """The caller ``token`` makes, counting a failure against ``client`` (the caller's
    address) and refusing (:class:`QuotaExceeded`) an address over the limit."""
    _guard(rt, client)
    try:
        tenant_id, info = rt.store.tokens.authenticate(token)
        tenant = rt.store.tenants.get(tenant_id)
    except (AuthenticationFailed, NotFound):
        _failed(rt, client)
        raise AuthenticationFailed("the API token is not valid") from None
    return Caller(tenant, info)


def issue_ticket(rt: Runtime, caller: Caller, meeting_id: str) -> str:
    """A caption ticket for one of the caller's meetings: one use, within
    :data:`pipeline.store.tickets.TICKET_TTL` seconds."""
    meeting = get_meeting(rt, meeting_id, caller.tenant.id)
    return rt.store.tickets.issue(Ticket(caller.tenant.id, meeting.id, caller.token.digest))


def redeem_ticket(rt: Runtime, ticket: str, meeting_id: str, client: str | None = None) -> Caller:
    """The caller a caption ticket stands for, if it is for ``meeting_id`` and the token that
    asked for it still holds; the ticket is used up either way."""
    _guard(rt, client)
    try:
        grant = rt.store.tickets.take(ticket)
        if grant.meeting_id != meeting_id:
            raise AuthenticationFailed("the caption ticket is for another meeting")
        info = rt.store.tokens.by_digest(grant.tenant_id, grant.token_digest)
        if info is None:
            raise AuthenticationFailed("the token that asked for this ticket was revoked")
        tenant = rt.store.tenants.get(grant.tenant_id)
    except NotFound:
        _failed(rt, client)
        raise AuthenticationFailed("the caption ticket is not valid") from None
    except AuthenticationFailed:
        _failed(rt, client)
        raise
    return Caller(tenant, info)


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    scopes = set()
    for value in values:
        try:
            scopes.add(Scope(value))
        except ValueError:
            raise InvalidInput(
                f"unknown scope: the scopes are {', '.join(s.value for s in Scope)}"
            ) from None
    if not scopes:
        raise InvalidInput("a token needs at least one scope")
    return frozenset(scopes)


def parse_duration(text: str) -> int:
    """Seconds from ``3600``, ``90m``, ``12h`` or ``30d``."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise InvalidInput("a duration is a whole number with an optional unit s, m, h or d")
    return int(match[1]) * _UNITS[match[2]]


def _check_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not 0 < len(name) <= 64 or not name.isprintable():
        raise InvalidInput("a token name is 1-64 printable characters")
    return name


def create_token(
    rt: Runtime,
    tenant_id: str,
    name: str,
    scopes: Iterable[Scope | str],
    expires_in: int | None = None,
    actor: str | None = None,
) -> tuple[ApiToken, str]:
    """A new named token; returns its record and the token itself (shown once)."""
    rt.store.tenants.get(tenant_id)
    wanted = parse_scopes(str(s.value if isinstance(s, Scope) else s) for s in scopes)
    if expires_in is not None and not MIN_LIFETIME <= expires_in <= MAX_LIFETIME:
        raise InvalidInput(
            f"a token expires {MIN_LIFETIME} s to {MAX_LIFETIME // 86400} days after it is made"
        )
    info, token = rt.store.tokens.create(tenant_id, _check_name(name), wanted, expires_in)
    rt.keys.audit.record(tenant_id, "token-create", actor=actor or rt.actor, outcome=info.id)
    return info, token


def list_tokens(rt: Runtime, tenant_id: str) -> list[ApiToken]:
    rt.store.tenants.get(tenant_id)
    return rt.store.tokens.list(tenant_id)


def revoke_token(rt: Runtime, tenant_id: str, token_id: str, actor: str | None = None) -> ApiToken:
    """The token stops working at once, and so do caption sockets and tickets it opened
    (within seconds). The tenant's last admin token cannot be revoked (:class:`Conflict`)."""
    rt.store.tenants.get(tenant_id)
    info = rt.store.tokens.revoke(tenant_id, token_id)
    rt.keys.audit.record(tenant_id, "token-revoke", actor=actor or rt.actor, outcome=info.id)
    return info


def rotate_token(
    rt: Runtime, tenant_id: str, token_id: str, actor: str | None = None
) -> tuple[ApiToken, str]:
    """A new secret for the token (same id, name, scopes and lifetime); the old secret stops
    working at once."""
    rt.store.tenants.get(tenant_id)
    info, token = rt.store.tokens.rotate(tenant_id, token_id)
    rt.keys.audit.record(tenant_id, "token-rotate", actor=actor or rt.actor, outcome=info.id)
    return info, token
