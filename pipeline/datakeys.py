"""A meeting's data keys, unwrapped for one purpose and audited: the one way anything in
sealscribe gets a key that opens content (capture, workers, delivery)."""

from __future__ import annotations

from keys.errors import KeyRevoked
from keys.types import DataKey, KeyContext, KeyUse, Purpose
from pipeline.models import Meeting
from pipeline.runtime import Runtime

__all__ = ["data_key"]


def data_key(rt: Runtime, meeting: Meeting, use: KeyUse, purpose: Purpose) -> DataKey:
    """Unwrap one of the meeting's data keys for ``purpose`` (audited). Refused outright,
    before any key use (but audited), once the tenant has revoked its key."""
    if rt.store.tenants.get(meeting.tenant_id).revoked:
        rt.keys.audit.record(
            meeting.tenant_id,
            "unwrap",
            actor=rt.actor,
            outcome="KeyRevoked",
            meeting=meeting.id,
            purpose=Purpose(purpose).value,
        )
        raise KeyRevoked(f"the key of tenant {meeting.tenant_id} was revoked")
    context = KeyContext(meeting.tenant_id, meeting.id, use)
    wrapped = rt.store.meetings.wrapped_key(meeting.id, use)
    return rt.keys.unwrap(context, wrapped, purpose, rt.actor)
