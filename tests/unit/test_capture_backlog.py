"""Capture's backlog of sealed segments while Redis is away (``pipeline/capture/sink.py``):
held up to its bound in bytes, stored in order once Redis answers; beyond the bound a live
source's segments are counted as dropped, while a file waits for room and loses none.

Redis is faked here (a store that refuses, then accepts) so the bound can be tested at byte
granularity; ``tests/faults/test_redis_restart.py`` proves the same path with a real Redis
killed and restarted mid-meeting."""

from __future__ import annotations

import asyncio
import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from keys.types import DataKey
from pipeline.capture import sealer as sealer_module
from pipeline.capture import sink as sink_module
from pipeline.capture.sealer import Sealer
from pipeline.capture.sink import Sink
from pipeline.errors import StoreUnavailable
from pipeline.models import AudioSegment, Meeting, SealedSegment

PCM = bytes(16000)  # 0.5 s of 16 kHz s16 audio


class FlakyStore:
    def __init__(self) -> None:
        self.up = False
        self.stored: list[SealedSegment] = []

    def put_audio(self, sealed: SealedSegment, ttl: int | None) -> str:
        if not self.up:
            raise StoreUnavailable("Redis is unreachable")
        self.stored.append(sealed)
        return sealed.segment_id


class Policy:
    def __init__(self) -> None:
        self.meeting = Meeting(id="m_test", tenant_id="t_test", created=0.0, transcription=True)
        self.revoked = self.ended = False
        self.on_change: list[Any] = []

    @property
    def transcribing(self) -> bool:
        return self.meeting.transcription

    def transcribes(self, participant: str) -> bool:
        return self.meeting.transcription


def segment(seq: int) -> AudioSegment:
    return AudioSegment("alice", seq, seq, 16000, PCM)


def fake_capture(
    monkeypatch: pytest.MonkeyPatch, wait_for_room: bool
) -> tuple[FlakyStore, list[str], Sealer]:
    """A sealer and sink over a store that is down until ``store.up``; the data key is
    already held (fetching it needs Redis and the key provider, tested elsewhere)."""
    enqueued: list[str] = []
    monkeypatch.setattr(
        sink_module, "enqueue_transcribe", lambda meeting_id, sid: enqueued.append(sid)
    )
    store = FlakyStore()
    tenants = SimpleNamespace(get=lambda tenant_id: SimpleNamespace(audio_ttl=None))
    rt: Any = SimpleNamespace(
        store=SimpleNamespace(segments=store, tenants=tenants),
        settings=SimpleNamespace(capture_backlog_mb=32),
    )
    policy: Any = Policy()
    sealer = Sealer(rt, policy, Sink(rt, policy, wait_for_room=wait_for_room))
    key = DataKey.generate()  # fetching it needs Redis and the key provider: tested elsewhere
    monkeypatch.setattr(sealer_module, "sealing_key", lambda rt, meeting, participant: key)
    sealer.sink.manifest_key = lambda participant: None  # manifests: tests/integration
    return store, enqueued, sealer


def test_the_backlog_holds_up_to_its_bound_then_counts_drops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, enqueued, sealer = fake_capture(monkeypatch, wait_for_room=False)
    sink = sealer.sink

    async def scenario() -> None:
        writer = asyncio.create_task(sink.writer())
        await sealer.submit(segment(0))
        sink.backlog_limit = 4 * sink._backlog_bytes + 100  # room for four segments
        for seq in range(1, 7):
            await sealer.submit(segment(seq * 1000))
            await asyncio.sleep(0.01)
        assert sink.backlog == 4 and sink.stats.dropped_backlog == 3
        assert sink._backlog_bytes <= sink.backlog_limit
        store.up = True  # Redis is back
        await sink.drain(timeout=15)
        writer.cancel()

    asyncio.run(scenario())
    assert sink.stats.sealed == 7 and sink.stats.stored == 4
    assert sink.backlog == 0 and sink._backlog_bytes == 0
    assert [s.segment_id for s in store.stored] == enqueued  # stored, then queued
    assert [s.seq for s in store.stored] == [0, 1000, 2000, 3000]  # the oldest kept


def test_a_file_waits_for_room_and_loses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    store, enqueued, sealer = fake_capture(monkeypatch, wait_for_room=True)
    sink = sealer.sink

    async def scenario() -> None:
        writer = asyncio.create_task(sink.writer())
        await sealer.submit(segment(0))
        sink.backlog_limit = 4 * sink._backlog_bytes + 100  # room for four segments

        async def rest() -> None:
            for seq in range(1, 7):
                await sealer.submit(segment(seq))

        feeding = asyncio.create_task(rest())
        await asyncio.sleep(0.5)
        assert not feeding.done() and sink.backlog == 4  # held back, not dropped
        assert sink.stats.dropped_backlog == 0
        store.up = True  # Redis is back: the file goes on
        await asyncio.wait_for(feeding, 15)
        await sink.flush()
        writer.cancel()

    asyncio.run(scenario())
    assert sink.stats.sealed == sink.stats.stored == 7 and sink.stats.dropped_backlog == 0
    assert [s.seq for s in store.stored] == list(range(7))
    assert [s.segment_id for s in store.stored] == enqueued


def test_a_file_waiting_for_room_when_switched_off_stores_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, _, sealer = fake_capture(monkeypatch, wait_for_room=True)
    sink = sealer.sink

    async def scenario() -> None:
        writer = asyncio.create_task(sink.writer())
        await sealer.submit(segment(0))
        sink.backlog_limit = sink._backlog_bytes + 100  # room for one segment
        waiting = asyncio.create_task(sealer.submit(segment(1)))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        sealer.policy.meeting = dataclasses.replace(sealer.policy.meeting, transcription=False)
        for callback in sealer.policy.on_change:
            callback()
        await asyncio.wait_for(waiting, 5)
        store.up = True
        await asyncio.sleep(0.5)
        writer.cancel()

    asyncio.run(scenario())
    assert store.stored == [] and sink.backlog == 0
    assert sink.stats.sealed == 2 and sink.stats.dropped_policy == 2
