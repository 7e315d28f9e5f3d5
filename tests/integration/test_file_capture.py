"""A recorded file takes the one capture path (``pipeline/capture/``) live tracks take: the
meeting's policy (opt-outs, revocation) applies to it, and so do capture's fault hooks."""

from __future__ import annotations

import pytest

from keys.errors import KeyRevoked
from pipeline import faults, services
from pipeline.capture.file import capture_segments
from pipeline.models import AudioSegment
from pipeline.queue import use_broker
from pipeline.runtime import Runtime


def segment(participant: str, seq: int) -> AudioSegment:
    return AudioSegment(participant, seq, seq * 1000, 16000, bytes(3200))


def test_a_file_honours_the_policy_and_the_capture_fault_reaches_it(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, _ = services.create_tenant(rt, "Acme")
    meeting = services.create_meeting(rt, tenant.id, transcription=True)
    services.set_consent(rt, meeting.id, "olive", opted_out=True)
    use_broker(rt.settings.broker)  # the queued tasks are never consumed

    stats = capture_segments(rt, meeting, [segment("olive", 0), segment("alice", 1)])
    assert (stats.sealed, stats.stored, stats.dropped_policy) == (1, 1, 1)
    assert rt.store.segments.pending_count(meeting.id) == 1

    # The privacy fault hook of capture sits in the one path, so it reaches files too.
    monkeypatch.setattr(faults, "active", lambda: frozenset({"capture-ignores-policy"}))
    stats = capture_segments(rt, meeting, [segment("olive", 2)])
    assert (stats.stored, stats.dropped_policy) == (1, 0)
    monkeypatch.undo()

    services.revoke_keys(rt, tenant.id)
    with pytest.raises(KeyRevoked):
        capture_segments(rt, meeting, [segment("alice", 3)])  # told, not silently dropped
