"""Tenant services: create, authenticate, look up."""

from __future__ import annotations

from pipeline.models import Tenant
from pipeline.runtime import Runtime

__all__ = ["authenticate", "create_tenant", "get_tenant", "list_tenants"]


def create_tenant(rt: Runtime, name: str) -> tuple[Tenant, str]:
    """Create a tenant and its key; returns the tenant and its API token (shown once)."""
    tenant, token = rt.store.tenants.create(name, rt.settings.key_provider)
    rt.keys.create_tenant_key(tenant.id, rt.actor)
    return tenant, token


def get_tenant(rt: Runtime, tenant_id: str) -> Tenant:
    return rt.store.tenants.get(tenant_id)


def list_tenants(rt: Runtime) -> list[Tenant]:
    return rt.store.tenants.list()


def authenticate(rt: Runtime, token: str) -> Tenant:
    """The tenant an API token belongs to (:class:`AuthenticationFailed` otherwise)."""
    return rt.store.tenants.authenticate(token)
