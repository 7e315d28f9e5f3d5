"""``KeyService``: every use of a tenant key, audited, whichever provider holds the key.

It adds to a :class:`KeyProvider` what must not differ between providers: an audit entry
for each call (with its purpose and outcome), rotation that rewraps every stored data key
(resumably, in batches, content untouched), and retirement that refuses to strand a key.
Wrapped keys are reached through :class:`WrappedKeyStore`, implemented by the Redis store.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from keys.audit import AuditLog
from keys.errors import InvalidKeyInput, KeyConflict
from keys.provider import KeyProvider
from keys.types import DataKey, KeyContext, KeyStatus, Purpose, WrappedKey

__all__ = ["KeyService", "RotationReport", "WrappedKeyStore"]

T = TypeVar("T")


class WrappedKeyStore(Protocol):
    """Where the wrapped data keys of a tenant are kept."""

    def wrapped_keys(
        self, tenant_id: str, cursor: int, count: int
    ) -> tuple[int, list[tuple[KeyContext, WrappedKey]]]:
        """One batch of the tenant's wrapped keys; a returned cursor of 0 means done."""
        ...

    def replace_wrapped(self, context: KeyContext, old: WrappedKey, new: WrappedKey) -> bool:
        """Swap ``old`` for ``new`` iff ``old`` is still stored (compare-and-set)."""
        ...


@dataclass(frozen=True)
class RotationReport:
    primary_version: int
    rewrapped: int


class KeyService:
    """Audited key operations for the rest of sealscribe.

    Args:
      provider: the key custodian.
      audit: the tenant audit log.
      store: the wrapped data keys, for rotation and retirement.
    """

    def __init__(self, provider: KeyProvider, audit: AuditLog, store: WrappedKeyStore) -> None:
        self.provider = provider
        self.audit = audit
        self.store = store

    def _audited(
        self,
        tenant_id: str,
        action: str,
        actor: str,
        call: Callable[[], T],
        *,
        meeting: str | None = None,
        purpose: Purpose | None = None,
        version: Callable[[T], int | None] | int | None = None,
        participant: str | None = None,
    ) -> T:
        try:
            result = call()
        except InvalidKeyInput:
            raise  # a malformed request never reached a key: nothing to audit
        except Exception as exc:  # a key error, or the caller's store failing: both audited
            self.audit.record(
                tenant_id,
                action,
                actor=actor,
                outcome=type(exc).__name__,
                meeting=meeting,
                purpose=purpose.value if purpose else None,
                key_version=version if isinstance(version, int) else None,
                participant=participant,
            )
            raise
        v = version(result) if callable(version) else version
        self.audit.record(
            tenant_id,
            action,
            actor=actor,
            meeting=meeting,
            purpose=purpose.value if purpose else None,
            key_version=v,
            participant=participant,
        )
        return result

    # -- data keys ---------------------------------------------------------------------

    def create_tenant_key(self, tenant_id: str, actor: str) -> int:
        return self._audited(
            tenant_id, "create", actor, lambda: self.provider.create(tenant_id), version=lambda v: v
        )

    def wrap(self, context: KeyContext, key: DataKey, purpose: Purpose, actor: str) -> WrappedKey:
        return self._audited(
            context.tenant_id,
            "wrap",
            actor,
            lambda: self.provider.wrap(context.tenant_id, key, context, purpose),
            meeting=context.meeting_id,
            purpose=purpose,
            version=lambda w: w.version,
            participant=context.participant_id,
        )

    def unwrap(
        self, context: KeyContext, wrapped: WrappedKey, purpose: Purpose, actor: str
    ) -> DataKey:
        """Unwrap a meeting data key for ``purpose``; audited whether it works or not."""
        return self._audited(
            context.tenant_id,
            "unwrap",
            actor,
            lambda: self.provider.unwrap(context.tenant_id, wrapped, context, purpose),
            meeting=context.meeting_id,
            purpose=Purpose(purpose),
            version=wrapped.version,
            participant=context.participant_id,
        )

    # -- tenant key lifecycle ----------------------------------------------------------

    def status(self, tenant_id: str) -> KeyStatus:
        return self.provider.status(tenant_id)

    def wrapped_versions(self, tenant_id: str) -> dict[int, int]:
        """How many stored data keys are wrapped under each key version."""
        counts: dict[int, int] = {}
        for _, wrapped in self._all_wrapped(tenant_id):
            counts[wrapped.version] = counts.get(wrapped.version, 0) + 1
        return counts

    def rotate(self, tenant_id: str, actor: str, batch: int = 100) -> RotationReport:
        """New primary version, then every data key rewrapped under it."""
        version = self._audited(
            tenant_id, "rotate", actor, lambda: self.provider.rotate(tenant_id), version=lambda v: v
        )
        return RotationReport(version, self.rewrap_pending(tenant_id, actor, batch))

    def import_key(
        self, tenant_id: str, material: bytes, actor: str, batch: int = 100
    ) -> RotationReport:
        """Bring your own key: it becomes the primary version and every key is rewrapped."""
        importer = getattr(self.provider, "import_key", None)
        if importer is None:
            raise InvalidKeyInput(f"the {self.provider.name} key provider does not import keys")
        version: int = self._audited(
            tenant_id, "import", actor, lambda: importer(tenant_id, material), version=lambda v: v
        )
        return RotationReport(version, self.rewrap_pending(tenant_id, actor, batch))

    def rewrap_pending(self, tenant_id: str, actor: str, batch: int = 100) -> int:
        """Rewrap every data key not yet under the primary version of the tenant's provider.

        Resumable: an interrupted run leaves each key either old or new (never lost), and
        running this again finishes the job."""
        status = self.provider.status(tenant_id)
        done = 0
        for context, wrapped in self._all_wrapped(tenant_id, batch):
            if wrapped.provider == status.provider and wrapped.version >= status.primary_version:
                continue
            new = self._audited(
                tenant_id,
                "rewrap",
                actor,
                functools.partial(self.provider.rewrap, tenant_id, wrapped, context),
                meeting=context.meeting_id,
                purpose=Purpose.REWRAP,
                version=lambda w: w.version,
                participant=context.participant_id,
            )
            if self.store.replace_wrapped(context, wrapped, new):
                done += 1
        return done

    def retire_below(self, tenant_id: str, version: int, actor: str) -> int:
        """Make versions below ``version`` unusable, after moving every key off them.

        Returns the number of data keys rewrapped first."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidKeyInput("the version to retire below must be a positive integer")
        status = self.provider.status(tenant_id)
        if version > status.primary_version:
            raise InvalidKeyInput(
                f"cannot retire below version {version}: the primary version "
                f"is {status.primary_version}"
            )
        moved = self.rewrap_pending(tenant_id, actor)
        stranded = sum(
            1
            for _, w in self._all_wrapped(tenant_id)
            if w.version < version or w.provider != status.provider
        )
        if stranded:
            raise KeyConflict(
                f"{stranded} data keys are still wrapped below version {version} "
                "or by another provider"
            )
        self._audited(
            tenant_id,
            "retire",
            actor,
            lambda: self.provider.retire_below(tenant_id, version),
            version=version,
        )
        return moved

    def revoke(self, tenant_id: str, actor: str) -> None:
        """Kill switch: after this nothing of the tenant can be opened."""
        self._audited(tenant_id, "revoke", actor, lambda: self.provider.revoke(tenant_id))

    def _all_wrapped(
        self, tenant_id: str, batch: int = 100
    ) -> Iterator[tuple[KeyContext, WrappedKey]]:
        cursor = 0
        while True:
            cursor, items = self.store.wrapped_keys(tenant_id, cursor, batch)
            yield from items
            if cursor == 0:
                return
