"""Who is calling: a tenant, by the bearer token ``sealscribe tenant create`` printed.

Every route that touches tenant data depends on :func:`current_tenant` and passes the tenant
id to the service functions, which answer :class:`NotFound` for anything of another tenant.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pipeline.errors import AuthenticationFailed
from pipeline.models import Tenant
from pipeline.runtime import Runtime

__all__ = ["CurrentTenant", "RuntimeDep", "current_tenant", "get_runtime"]

_bearer = HTTPBearer(auto_error=False, description="the tenant's API token")


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def current_tenant(
    rt: RuntimeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Tenant:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("an Authorization: Bearer token is required")
    return rt.store.tenants.authenticate(credentials.credentials)


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
