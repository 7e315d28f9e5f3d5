"""Wiring: settings -> Redis store, key provider, audited key service.

Every process (CLI, API, bot, worker) builds one ``Runtime`` at start-up and passes it to
the service functions.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass

from keys.audit import AuditLog
from keys.local import LocalKeyring
from keys.provider import KeyProvider
from keys.router import ProviderRouter
from keys.service import KeyService
from keys.transit import TransitKeyProvider
from pipeline import faults
from pipeline.config import Settings
from pipeline.store import Store

__all__ = ["Runtime", "build_providers", "default_actor"]


def build_providers(settings: Settings) -> dict[str, KeyProvider]:
    """Every provider configured here: the local keyring always, Transit when configured.
    ``SEALSCRIBE_KEY_PROVIDER`` picks the one new tenants get."""
    providers: dict[str, KeyProvider] = {"local": LocalKeyring(settings.keyring_dir)}
    if settings.transit is not None:
        providers["transit"] = TransitKeyProvider(settings.transit)
    return providers


def default_actor(kind: str) -> str:
    """Who is acting, for the audit log: ``cli:alice@host``, ``worker:host:pid``."""
    host = socket.gethostname()
    if kind == "cli":
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        return f"cli:{user}@{host}"
    return f"{kind}:{host}:{os.getpid()}"


@dataclass
class Runtime:
    settings: Settings
    store: Store
    keys: KeyService
    actor: str

    @classmethod
    def from_settings(
        cls, settings: Settings, actor: str, provider: KeyProvider | None = None
    ) -> Runtime:
        store = Store.from_url(
            settings.redis_url,
            settings.audio_ttl,
            settings.transcript_ttl,
            settings.redis_wait_replicas,
            settings.redis_wait_ms,
        )
        if provider is None:
            provider = ProviderRouter(
                build_providers(settings), lambda tenant: store.tenants.get(tenant).key_provider
            )
        # the chain is keyed by the tenant's provider (unkeyed only with the audit-unkeyed fault)
        authenticator = None if faults.on("audit-unkeyed") else provider
        keys = KeyService(
            provider, AuditLog(store.audit, authenticator=authenticator), store.meetings
        )
        return cls(settings, store, keys, actor)
