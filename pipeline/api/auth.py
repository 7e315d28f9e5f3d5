"""Who is calling, and what it may do: a tenant's API token (``Authorization: Bearer``) and
the scopes it holds.

Every route that touches tenant data declares the scopes it needs, and nothing else, with
:func:`require` (or one of the aliases below), and passes the tenant id to the service
functions, which answer :class:`NotFound` for anything of another tenant. The rule itself
(``admin`` holds every scope; 403 ``insufficient-scope`` otherwise) lives in
:func:`pipeline.services.tokens.require_scope`. Failed authentications count against the
client's address (:func:`client_address`); over the limit every attempt gets 429.
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from pipeline.config import Settings
from pipeline.errors import AuthenticationFailed
from pipeline.models import Scope, Tenant
from pipeline.runtime import Runtime
from pipeline.services.quotas import check_rate
from pipeline.services.tokens import Caller, require_scope, sign_in

__all__ = [
    "Admin",
    "CurrentCaller",
    "CurrentTenant",
    "Meetings",
    "Reader",
    "RuntimeDep",
    "Viewer",
    "client_address",
    "current_caller",
    "get_runtime",
    "require",
]

_bearer = HTTPBearer(
    auto_error=False,
    description="one of the tenant's API tokens; each operation needs one of the scopes it "
    "names (admin, meetings, read; admin holds all three)",
)


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def client_address(conn: HTTPConnection, settings: Settings) -> str:
    """The address failed authentications are counted against: the peer's, or, when the
    operator named the header a reverse proxy sets (``SEALSCRIBE_CLIENT_ADDRESS_HEADER``),
    the right-most entry of that header (the one the proxy itself wrote), if it is an IP
    address."""
    header = settings.client_address_header
    if header:
        last = conn.headers.get(header, "").rsplit(",", 1)[-1].strip()
        with contextlib.suppress(ValueError):  # not an address: the peer's counts
            return str(ipaddress.ip_address(last))
    return conn.client.host if conn.client else "unknown"


def current_caller(
    request: Request,
    rt: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("an Authorization: Bearer token is required")
    caller = sign_in(rt, credentials.credentials, client_address(request, rt.settings))
    check_rate(rt, caller.tenant.id)  # the tenant's requests per second (services.quotas)
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]


def require(*scopes: Scope) -> Any:
    """A dependency giving the calling tenant if its token holds any of ``scopes``;
    401 without a valid token, 403 ``insufficient-scope`` without the scope."""
    if not scopes:
        raise ValueError("require() needs at least one scope")

    def tenant_with_scope(caller: CurrentCaller) -> Tenant:
        require_scope(caller, *scopes)
        return caller.tenant

    tenant_with_scope.scopes = scopes  # type: ignore[attr-defined]  # read by the route test
    return Depends(tenant_with_scope)


#: keys, audit, retention, export of everything, meeting deletes, tokens
Admin = Annotated[Tenant, require(Scope.ADMIN)]
#: meetings and bots: create, switch, consent, join and leave, WHIP publish
Meetings = Annotated[Tenant, require(Scope.MEETINGS)]
#: transcripts and privacy reports
Reader = Annotated[Tenant, require(Scope.READ)]
#: what either a meetings or a read token may see: the tenant, meetings, the bot's state,
#: live captions
Viewer = Annotated[Tenant, require(Scope.READ, Scope.MEETINGS)]
#: the tenant of an admin token (routes should name their scope; this fails closed)
CurrentTenant = Admin
