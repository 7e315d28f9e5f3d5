"""Tenant services: create, authenticate, look up."""

from __future__ import annotations

from pipeline.audio.announce import KINDS, MAX_SECONDS, render_text
from pipeline.audio.decode import decode_bytes
from pipeline.errors import InvalidInput
from pipeline.models import Tenant
from pipeline.runtime import Runtime

__all__ = [
    "announcements",
    "authenticate",
    "create_tenant",
    "get_tenant",
    "list_tenants",
    "set_announcement",
]


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


def announcements(rt: Runtime, tenant_id: str) -> dict[str, str]:
    """Each spoken announcement of the tenant's bot: ``own`` or ``default``."""
    rt.store.tenants.get(tenant_id)
    own = set(rt.store.tenants.announcements(tenant_id))
    return {kind: "own" if kind in own else "default" for kind in KINDS}


def set_announcement(
    rt: Runtime,
    tenant_id: str,
    kind: str,
    text: str | None = None,
    audio: bytes | None = None,
) -> dict[str, str]:
    """The tenant's own announcement for ``kind`` (join, on, off): a ``text`` spoken by
    espeak-ng (refused where it is not installed), or an ``audio`` file (any format PyAV
    reads, at most 30 s); neither goes back to the packaged default."""
    if kind not in KINDS:
        raise InvalidInput(f"the announcement is one of {', '.join(KINDS)}")
    if text is not None and audio is not None:
        raise InvalidInput("give a text or an audio file, not both")
    rt.store.tenants.get(tenant_id)
    pcm = None
    if text is not None:
        pcm = render_text(text)
    elif audio is not None:
        pcm = decode_bytes(audio, MAX_SECONDS, "the announcement's audio")
    rt.store.tenants.set_announcement(tenant_id, kind, pcm)
    rt.keys.audit.record(
        tenant_id, "announcement", actor=rt.actor, outcome=f"{kind}:{'own' if pcm else 'default'}"
    )
    return announcements(rt, tenant_id)
