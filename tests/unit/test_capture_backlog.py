"""The bot's backlog of sealed segments while Redis is away: held up to its bound in bytes,
stored in order once Redis answers, and counted as dropped beyond the bound.

Redis is faked here (a store that refuses, then accepts) so the bound can be tested at byte
granularity; ``tests/faults/test_redis_restart.py`` proves the same path with a real Redis
killed and restarted mid-meeting."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from keys.errors import StoreUnavailable
from keys.types import DataKey
from pipeline.bot import capture as capture_module
from pipeline.bot.capture import MeetingCapture
from pipeline.models import Meeting, SealedSegment

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

    def transcribes(self, participant: str) -> bool:
        return self.meeting.transcription


def test_the_backlog_holds_up_to_its_bound_then_counts_drops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enqueued: list[str] = []
    monkeypatch.setattr(
        capture_module, "enqueue_transcribe", lambda meeting_id, sid: enqueued.append(sid)
    )
    store = FlakyStore()
    rt: Any = SimpleNamespace(
        store=SimpleNamespace(segments=store), settings=SimpleNamespace(capture_backlog_mb=32)
    )

    async def scenario() -> MeetingCapture:
        capture = MeetingCapture(rt, Policy())  # type: ignore[arg-type]
        capture._key, capture._audio_ttl = DataKey.generate(), None
        writer = asyncio.create_task(capture.writer())
        await capture.submit("alice", 0, PCM)
        capture.backlog_limit = 4 * capture._backlog_bytes + 100  # room for four segments
        for seq in range(1, 7):
            await capture.submit("alice", seq * 1000, PCM)
            await asyncio.sleep(0.01)
        assert capture.backlog == 4 and capture.stats.dropped_backlog == 3
        assert capture._backlog_bytes <= capture.backlog_limit
        store.up = True  # Redis is back
        await capture.drain(timeout=15)
        writer.cancel()
        return capture

    capture = asyncio.run(scenario())
    assert capture.stats.sealed == 7 and capture.stats.stored == 4
    assert capture.backlog == 0 and capture._backlog_bytes == 0
    assert [s.segment_id for s in store.stored] == enqueued  # stored, then queued
    assert [s.seq for s in store.stored] == [0, 1000, 2000, 3000]  # the oldest kept
