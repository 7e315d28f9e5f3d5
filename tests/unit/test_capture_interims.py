"""Interim audio at capture (``pipeline/capture/``): a track hands interims and the pieces of
a cut utterance, positioned in meeting time, to the sealer; the sink holds only the newest
interim of each participant, writes it only after the finals pending, never retries it, and
lets it go when its final arrives or the policy says no.

Redis is faked here (a store that logs what reaches it, or refuses) so the order of writes
and the drops can be observed exactly; the stores themselves are tested against real Redis
elsewhere, and ``tests/integration/test_cuts.py`` runs the cut pieces end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from types import SimpleNamespace
from typing import Any

import pytest

from keys.types import DataKey
from pipeline.capture import sealer as sealer_module
from pipeline.capture import sink as sink_module
from pipeline.capture.sealer import Sealer
from pipeline.capture.sink import Sink
from pipeline.capture.track import TrackCapture
from pipeline.errors import StoreUnavailable
from pipeline.models import AudioSegment, Meeting, SealedSegment
from pipeline.sealing import open_interim_audio
from tests.unit.test_capture_edge import Frames, stereo_48k

PCM = bytes(16000)  # 0.5 s of 16 kHz s16 audio


class Store:
    """Segments and interim slots of a Redis that is up or down; logs every write."""

    def __init__(self, log: list[tuple[str, str, int, int]]) -> None:
        self.up = True
        self.log = log
        self.slots: dict[str, tuple[int, SealedSegment]] = {}
        self.segments = SimpleNamespace(put_audio=self._put_final)
        self.interims = SimpleNamespace(put_audio=self._put_interim)

    def _check(self) -> None:
        if not self.up:
            raise StoreUnavailable("Redis is unreachable")

    def _put_final(self, sealed: SealedSegment, ttl: int | None) -> str:
        self._check()
        self.log.append(("final", sealed.participant_id, sealed.seq, 0))
        return sealed.segment_id

    def _put_interim(self, sealed: SealedSegment, part: int) -> bool:
        self._check()
        self.log.append(("interim", sealed.participant_id, sealed.seq, part))
        self.slots[sealed.participant_id] = (part, sealed)
        return True


class Policy:
    def __init__(self) -> None:
        self.meeting = Meeting(id="m_test", tenant_id="t_test", created=0.0, transcription=True)
        self.revoked = self.ended = False
        self.on_change: list[Any] = []

    @property
    def transcribing(self) -> bool:
        return self.meeting.transcription

    def transcribes(self, participant: str) -> bool:
        return not self.revoked and self.meeting.transcribes(participant)

    def change(self, **fields: Any) -> None:
        self.meeting = dataclasses.replace(self.meeting, **fields)
        for callback in self.on_change:
            callback()


def capture(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Store, list[tuple[str, str, int, int]], Sealer]:
    log: list[tuple[str, str, int, int]] = []
    monkeypatch.setattr(
        sink_module, "enqueue_transcribe", lambda m, sid: log.append(("queue", sid, 0, 0))
    )
    monkeypatch.setattr(
        sink_module, "enqueue_interim", lambda m, p: log.append(("queue-interim", p, 0, 0))
    )
    store = Store(log)
    tenants = SimpleNamespace(get=lambda tenant_id: SimpleNamespace(audio_ttl=None))
    rt: Any = SimpleNamespace(
        store=SimpleNamespace(segments=store.segments, interims=store.interims, tenants=tenants),
        settings=SimpleNamespace(capture_backlog_mb=32),
    )
    policy: Any = Policy()
    sealer = Sealer(rt, policy, Sink(rt, policy))
    key = DataKey.generate()  # fetching it needs Redis and the key provider: tested elsewhere
    monkeypatch.setattr(sealer_module, "sealing_key", lambda rt, meeting, participant: key)
    sealer.sink.manifest_key = lambda participant: None  # manifests: tests/integration
    return store, log, sealer


def final(who: str, seq: int) -> AudioSegment:
    return AudioSegment(who, seq, seq, 16000, PCM)


def interim(who: str, seq: int, part: int) -> AudioSegment:
    return AudioSegment(who, seq, seq, 16000, PCM, part=part)


async def settle(sink: Sink) -> None:
    await sink.drain(5)
    for _ in range(20):  # the interims go after the finals, in the same round
        await asyncio.sleep(0.02)


def test_interims_go_after_the_finals_and_only_the_newest_of_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, log, sealer = capture(monkeypatch)
    sink = sealer.sink

    async def scenario() -> None:
        for part in (1, 2, 3):
            await sealer.submit_interim(interim("ann", 5000, part))
        await sealer.submit_interim(interim("bob", 7000, 1))
        for seq in (1000, 2000):
            await sealer.submit(final("ann", seq))
        await sealer.submit(final("bob", 3000))
        assert len(sink._interims) == 2 and sink.backlog == 3
        backlog_bytes = sink._backlog_bytes
        assert backlog_bytes == 3 * len(sink._backlog[0].sealed)  # interims not counted
        writer = asyncio.create_task(sink.writer())
        await settle(sink)
        writer.cancel()

    asyncio.run(scenario())
    kinds = [entry[0] for entry in log]
    assert kinds == ["final", "queue"] * 3 + ["interim", "queue-interim"] * 2
    assert sorted(e[1:] for e in log if e[0] == "interim") == [("ann", 5000, 3), ("bob", 7000, 1)]
    stats = sealer.stats
    assert (stats.interims_sealed, stats.interims_stored, stats.interims_dropped) == (4, 2, 2)
    # what was written is the interim audio, sealed as its own kind, at its utterance
    part, sealed = store.slots["ann"]
    assert "ann" in sealer._keys
    opened = open_interim_audio(sealer._keys["ann"], "t_test", sealed)
    assert (part, opened.part, opened.seq, opened.pcm) == (3, 3, 5000, PCM)


def test_an_interim_whose_final_came_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    _store, log, sealer = capture(monkeypatch)
    sink = sealer.sink

    async def scenario() -> None:
        await sealer.submit_interim(interim("ann", 5000, 1))
        await sealer.submit(final("ann", 5000))  # its final: the interim held is moot
        assert sink._interims == {}
        await sealer.submit_interim(interim("ann", 5000, 2))  # late: moot too
        await sealer.submit_interim(interim("ann", 4000, 9))  # an older utterance's
        assert sink._interims == {}
        await sealer.submit_interim(interim("ann", 9000, 1))  # the next utterance's
        writer = asyncio.create_task(sink.writer())
        await settle(sink)
        writer.cancel()

    asyncio.run(scenario())
    assert [e for e in log if e[0] == "interim"] == [("interim", "ann", 9000, 1)]
    assert sealer.stats.interims_dropped == 3 and sealer.stats.interims_stored == 1


def test_interims_are_dropped_not_retried_when_redis_is_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, log, sealer = capture(monkeypatch)
    sink = sealer.sink
    store.up = False

    async def scenario() -> None:
        writer = asyncio.create_task(sink.writer())
        await sealer.submit_interim(interim("ann", 5000, 1))
        await asyncio.sleep(0.3)
        assert sink._interims == {} and sealer.stats.interims_dropped == 1  # tried once
        # a final waits (retried); the interims meanwhile are not written before it
        await sealer.submit(final("ann", 6000))
        await sealer.submit_interim(interim("ann", 8000, 1))
        await sealer.submit_interim(interim("ann", 8000, 2))
        await asyncio.sleep(0.5)
        assert sink.backlog == 1 and len(sink._interims) == 1
        store.up = True
        await settle(sink)
        writer.cancel()

    asyncio.run(scenario())
    assert [e[0] for e in log] == ["final", "queue", "interim", "queue-interim"]
    assert [e for e in log if e[0] == "interim"] == [("interim", "ann", 8000, 2)]
    assert sealer.stats.interims_dropped == 2 and sealer.stats.stored == 1


@pytest.mark.parametrize("change", ["off", "opt-out", "revoked"])
def test_a_policy_change_lets_the_held_interims_go(
    monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    _store, log, sealer = capture(monkeypatch)
    sink = sealer.sink
    policy: Any = sealer.policy

    async def scenario() -> None:
        await sealer.submit_interim(interim("ann", 5000, 1))
        await sealer.submit_interim(interim("bob", 5000, 1))
        if change == "off":
            policy.change(transcription=False)
        elif change == "opt-out":
            policy.change(opted_out=frozenset({"ann"}))
        else:
            policy.revoked = True
            policy.change()
        await sealer.submit_interim(interim("ann", 6000, 1))  # refused before sealing
        writer = asyncio.create_task(sink.writer())
        await settle(sink)
        writer.cancel()

    asyncio.run(scenario())
    written = [e[1] for e in log if e[0] == "interim"]
    assert "ann" not in written
    assert written == (["bob"] if change == "opt-out" else [])
    assert sealer.stats.interims_sealed == 2


def test_the_policy_is_asked_again_when_the_interim_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _store, log, sealer = capture(monkeypatch)
    sink = sealer.sink
    policy: Any = sealer.policy

    async def scenario() -> None:
        await sealer.submit_interim(interim("ann", 5000, 1))
        # the meeting object changes without a callback (as between polls): still not written
        policy.meeting = dataclasses.replace(policy.meeting, opted_out=frozenset({"ann"}))
        writer = asyncio.create_task(sink.writer())
        sink._wake.set()
        await settle(sink)
        writer.cancel()

    asyncio.run(scenario())
    assert log == [] and sealer.stats.interims_dropped == 1


class TrackSealer:
    """Stands in for the Sealer of a track: records finals and interims as handed over."""

    def __init__(self, interim_ms: int, max_segment_ms: int) -> None:
        self.policy = SimpleNamespace(
            meeting=SimpleNamespace(created=time.time() - 100), transcribes=lambda p: True
        )
        self.stats = SimpleNamespace(frames=0, frames_off=0)
        settings = SimpleNamespace(
            # tones, not speech: the energy rule (the Silero path: tests/integration)
            max_segment_ms=max_segment_ms,
            end_silence_ms=500,
            interim_ms=interim_ms,
            vad="energy",
        )
        self.rt = SimpleNamespace(settings=settings)
        self.finals: list[AudioSegment] = []
        self.interims: list[AudioSegment] = []

    async def submit(self, segment: AudioSegment) -> None:
        self.finals.append(segment)

    async def submit_interim(self, segment: AudioSegment) -> None:
        self.interims.append(segment)


def test_a_track_hands_over_interims_and_cut_pieces_in_meeting_time() -> None:
    frames = stereo_48k(1.0, False, 0) + stereo_48k(9.0, True, 50) + stereo_48k(1.5, False, 500)
    sealer = TrackSealer(interim_ms=1000, max_segment_ms=4000)
    asyncio.run(TrackCapture(sealer, "ann", Frames(frames)).run())  # type: ignore[arg-type]
    finals, interims = sealer.finals, sealer.interims
    assert len(finals) >= 3 and interims
    origin = finals[0].start_ms - 760  # the tone starts 1 s in, less the pre-roll
    assert 90_000 <= origin <= 110_000  # meeting time: the meeting began 100 s ago
    for a, b in zip(finals, finals[1:]):  # noqa: RUF007 (readable pairs)
        assert a.keep_to_ms is not None and a.keep_to_ms == b.keep_from_ms
        assert b.start_ms < a.keep_to_ms < a.end_ms  # the pieces overlap around the cut
    assert finals[0].keep_from_ms is None and finals[-1].keep_to_ms is None
    by_seq = {f.seq: f for f in finals}
    for i in interims:
        piece = by_seq[i.seq]  # an interim sits at its final's position
        assert i.part >= 1 and i.start_ms == piece.start_ms
        assert i.keep_from_ms == piece.keep_from_ms and i.keep_to_ms is None
    parts = [i.part for i in interims if i.seq == finals[0].seq]
    assert parts == list(range(1, len(parts) + 1))
    # off by default for the sealer of a track whose settings say 0
    sealer = TrackSealer(interim_ms=0, max_segment_ms=4000)
    frames = stereo_48k(1.0, False, 0) + stereo_48k(3.0, True, 50) + stereo_48k(1.5, False, 200)
    asyncio.run(TrackCapture(sealer, "ann", Frames(frames)).run())  # type: ignore[arg-type]
    assert sealer.finals and sealer.interims == []
