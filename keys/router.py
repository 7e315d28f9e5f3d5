"""``ProviderRouter``: several key providers at once, each tenant with its own.

A tenant's new keys go to the provider its record names; a wrapped data key is always
unwrapped by the provider that wrapped it (its text form names it). Rewrapping a key whose
provider is not the tenant's moves it across (unwrap in memory, wrap with the other), which
is how a tenant migrates between the local keyring and a KMS, resumably and without
re-encrypting content.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from keys.errors import InvalidKeyInput, KeyUnavailable
from keys.provider import KeyProvider
from keys.types import DataKey, KeyContext, KeyStatus, Purpose, WrappedKey

__all__ = ["ProviderRouter"]


class ProviderRouter:
    name = "router"

    def __init__(
        self, providers: Mapping[str, KeyProvider], tenant_provider: Callable[[str], str]
    ) -> None:
        self.providers = dict(providers)
        self._tenant_provider = tenant_provider

    def provider_for(self, tenant_id: str) -> KeyProvider:
        return self._named(self._tenant_provider(tenant_id))

    def _named(self, name: str) -> KeyProvider:
        try:
            return self.providers[name]
        except KeyError:
            raise KeyUnavailable(
                f"key provider {name!r} is not configured here "
                "(see SEALSCRIBE_KEY_PROVIDER and SEALSCRIBE_TRANSIT_*)"
            ) from None

    def health(self) -> None:
        for provider in self.providers.values():
            provider.health()

    def create(self, tenant_id: str) -> int:
        return self.provider_for(tenant_id).create(tenant_id)

    def wrap(
        self, tenant_id: str, key: DataKey, context: KeyContext, purpose: Purpose
    ) -> WrappedKey:
        return self.provider_for(tenant_id).wrap(tenant_id, key, context, purpose)

    def unwrap(
        self, tenant_id: str, wrapped: WrappedKey, context: KeyContext, purpose: Purpose
    ) -> DataKey:
        return self._named(wrapped.provider).unwrap(tenant_id, wrapped, context, purpose)

    def rewrap(self, tenant_id: str, wrapped: WrappedKey, context: KeyContext) -> WrappedKey:
        target = self.provider_for(tenant_id)
        if wrapped.provider == target.name:
            return target.rewrap(tenant_id, wrapped, context)
        key = self._named(wrapped.provider).unwrap(tenant_id, wrapped, context, Purpose.REWRAP)
        return target.wrap(tenant_id, key, context, Purpose.REWRAP)

    def rotate(self, tenant_id: str) -> int:
        return self.provider_for(tenant_id).rotate(tenant_id)

    def retire_below(self, tenant_id: str, version: int) -> None:
        self.provider_for(tenant_id).retire_below(tenant_id, version)

    def revoke(self, tenant_id: str) -> None:
        self.provider_for(tenant_id).revoke(tenant_id)

    def mac(self, tenant_id: str, data: bytes) -> str:
        return self.provider_for(tenant_id).mac(tenant_id, data)

    def check_macs(self, tenant_id: str, items: Sequence[tuple[bytes, str]]) -> list[bool | None]:
        """Each MAC checked by the provider that made it (its text form names it)."""
        out: list[bool | None] = [None] * len(items)
        by_provider: dict[str, list[int]] = {}
        for i, (_, mac) in enumerate(items):
            by_provider.setdefault(mac.partition(":")[0], []).append(i)
        for name, where in by_provider.items():
            provider = self.providers.get(name)
            if provider is None:
                continue  # not configured here: cannot be checked here
            found = provider.check_macs(tenant_id, [items[i] for i in where])
            for i, good in zip(where, found, strict=True):
                out[i] = good
        return out

    def status(self, tenant_id: str) -> KeyStatus:
        return self.provider_for(tenant_id).status(tenant_id)

    def import_key(self, tenant_id: str, material: bytes) -> int:
        provider = self.provider_for(tenant_id)
        importer = getattr(provider, "import_key", None)
        if importer is None:
            raise InvalidKeyInput(
                f"the {provider.name} key provider does not import keys: "
                "import it into the KMS itself"
            )
        version: int = importer(tenant_id, material)
        return version

    def delete(self, tenant_id: str) -> None:
        """Remove what is left of a revoked tenant's key, where the provider can."""
        delete = getattr(self.provider_for(tenant_id), "delete", None)
        if delete is not None:
            delete(tenant_id)
