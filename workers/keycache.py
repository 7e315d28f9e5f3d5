"""Unwrapped data keys, kept in a worker's memory for a short while.

Transcribing a meeting means one unwrap per meeting and key use, not one per segment: with a
KMS each unwrap is a network round trip (see bench/seal.py). Entries live at most ``ttl``
seconds (``SEALSCRIBE_KEY_CACHE_SECONDS``), so a key revoked or retired in the KMS itself
stops working within that time; a revocation through sealscribe is seen by the worker's
per-segment tenant check at once and clears the tenant's entries.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from keys.types import DataKey, KeyUse

__all__ = ["DataKeyCache"]


class DataKeyCache:
    def __init__(
        self, ttl: float, clock: Callable[[], float] = time.monotonic, max_entries: int = 1024
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str, KeyUse, str], tuple[DataKey, float]] = {}

    def get(
        self,
        tenant_id: str,
        meeting_id: str,
        use: KeyUse,
        wrapped: str,
        unwrap: Callable[[], DataKey],
    ) -> DataKey:
        """The cached key for this exact wrapped key, or ``unwrap()`` (and remember it)."""
        now = self._clock()
        slot = (tenant_id, meeting_id, use, wrapped)
        hit = self._entries.get(slot)
        if hit is not None and hit[1] > now:
            return hit[0]
        key = unwrap()
        if len(self._entries) >= self.max_entries:
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            while len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
        self._entries[slot] = (key, now + self.ttl)
        return key

    def forget_tenant(self, tenant_id: str) -> None:
        self._entries = {k: v for k, v in self._entries.items() if k[0] != tenant_id}
