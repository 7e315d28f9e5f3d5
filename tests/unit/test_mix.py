"""A mixed room's capture (``pipeline/capture/mix.py``) and its speaker timeline: the mix is
cut at changes of speaker and labelled with who was talking, speech several make at once is
under their group, nothing near a participant who is not transcribed is kept, and speech
nobody was reported talking for starts nothing.

The mix is real speech (the jfk clip, Silero decides what is speech); the sealer is faked (a
collaborator: sealing is tested elsewhere) and so is the clock, which follows the mix as it
is read, so that the talking reports can be placed exactly. The same path runs end to end
against a real AudioBridge in ``tests/integration/test_janus_audiobridge.py``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pipeline.audio.decode import decode_file
from pipeline.capture.mix import MixCapture, MixTiming
from pipeline.capture.sink import CaptureStats
from pipeline.capture.speakers import SpeakerTimeline
from pipeline.config import Settings
from pipeline.ids import speaker_group
from pipeline.models import AudioSegment, Meeting, speakers
from tests.unit.test_capture_edge import Frames

JFK = Path(__file__).resolve().parents[2] / "pipeline" / "demo_data" / "jfk.ogg"
WINDOW_MS = 200  # the room's talking-event window (10 packets)


def test_the_timeline_moves_reports_back_by_the_lag_and_merges_a_quick_resume() -> None:
    t = SpeakerTimeline(lag_ms=200)
    t.talking("ann", 1200)  # talking from 1000
    t.stopped("ann", 2200)  # until 2000
    t.talking("ann", 2300)  # resumed at 2100: a new interval
    t.talking("bob", 1700)
    assert t.talkers(900) == frozenset()
    assert t.talkers(1500) == {"ann", "bob"}
    assert t.talkers(2050) == {"bob"}
    assert t.talkers(2050, reach_ms=60) == {"ann", "bob"}
    t.stopped("bob", 1900)  # bob: 1500-1700
    assert t.talkers(1800) == {"ann"}
    t.prune(5000)
    assert t.talkers(1500) == frozenset()  # forgotten: ended before 5000
    assert t.talkers(9000) == {"ann"}  # still talking


@dataclass
class Policy:
    opted_out: frozenset[str] = frozenset()
    on: bool = True
    meeting: Meeting = field(
        default_factory=lambda: Meeting("m_0000000000000000", "t_0000000000000000", 0.0, True)
    )

    @property
    def transcribing(self) -> bool:
        return self.on

    def transcribes(self, participant: str) -> bool:
        return self.on and not set(speakers(participant)) & self.opted_out


class FakeSealer:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.stats = CaptureStats()
        self.rt = type("Rt", (), {"settings": Settings()})()
        self.got: list[AudioSegment] = []

    async def submit(self, segment: AudioSegment) -> None:
        if self.policy.transcribes(segment.participant_id):
            self.got.append(segment)

    async def submit_interim(self, segment: AudioSegment) -> None:
        pass


@pytest.fixture(scope="module")
def speech() -> bytes:
    """About 20 s of continuous speech: the jfk clip twice."""
    return decode_file(JFK, 60) * 2


def frames(pcm: bytes) -> list[av.AudioFrame]:
    out = []
    for i in range(0, len(pcm) - 640 + 1, 640):  # 20 ms at 16 kHz
        f = av.AudioFrame.from_ndarray(
            np.frombuffer(pcm[i : i + 640], dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        f.sample_rate = 16000
        out.append(f)
    return out


def capture(
    pcm: bytes,
    talking: list[tuple[str, float, float]],
    monkeypatch: pytest.MonkeyPatch,
    opted_out: frozenset[str] = frozenset(),
) -> tuple[FakeSealer, list[tuple[str, int, int]]]:
    """Run the mix of ``pcm`` with each (who, from s, to s) reported talking as AudioBridge
    reports it (one window late); the segments kept, as (who, start ms, end ms)."""
    sealer = FakeSealer(Policy(opted_out))
    timeline = SpeakerTimeline(MixTiming(WINDOW_MS).lag_ms)
    reports = sorted(
        [(int(a * 1000) + WINDOW_MS, who, True) for who, a, _ in talking]
        + [(int(b * 1000) + WINDOW_MS, who, False) for who, _, b in talking]
    )
    clock = {"ms": 0.0}
    track = Frames(frames(pcm))
    recv = track.recv

    async def paced() -> Any:
        frame = await recv()
        clock["ms"] += 20  # the mix arrives in real time
        while reports and reports[0][0] <= clock["ms"]:
            at, who, on = reports.pop(0)
            (timeline.talking if on else timeline.stopped)(who, at)
        return frame

    track.recv = paced  # type: ignore[method-assign]
    mix = MixCapture(sealer, track, timeline, MixTiming(WINDOW_MS))  # type: ignore[arg-type]
    monkeypatch.setattr(mix, "_now_ms", lambda: clock["ms"])
    asyncio.run(mix.run())
    kept = [
        (s.participant_id, s.start_ms, s.start_ms + len(s.pcm) * 1000 // 32000) for s in sealer.got
    ]
    return sealer, kept


def test_turns_are_cut_at_the_change_of_speaker_and_labelled(
    speech: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, kept = capture(speech, [("ann", 0, 7), ("bob", 7, 20)], monkeypatch)
    assert {who for who, _, _ in kept} == {"ann", "bob"}
    for who, start, end in kept:
        if who == "ann":
            assert end <= 7000 + WINDOW_MS, (who, start, end)
        else:
            assert start >= 7000 - WINDOW_MS, (who, start, end)


def test_speech_at_once_is_under_both_names(speech: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    _, kept = capture(speech, [("ann", 0, 12), ("bob", 5, 9)], monkeypatch)
    groups = [(s, e) for who, s, e in kept if who == speaker_group(["bob", "ann"])]
    assert groups, kept
    assert all(s >= 4500 and e <= 9500 for s, e in groups), groups


def test_nothing_near_an_opted_out_speaker_is_kept_even_under_someone_else(
    speech: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = MixTiming(WINDOW_MS).guard_ms
    sealer, kept = capture(
        speech, [("ann", 0, 20), ("cat", 6, 9)], monkeypatch, opted_out=frozenset({"cat"})
    )
    assert kept and all(who == "ann" for who, _, _ in kept)
    inside = [(s, e) for _, s, e in kept if e > 6000 - guard and s < 9000 + guard]
    assert inside == [], inside
    assert sealer.stats.frames_off > 0


def test_speech_nobody_was_reported_talking_for_is_not_kept(
    speech: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealer, kept = capture(speech, [], monkeypatch)
    assert kept == []
    assert sealer.stats.frames_unattributed > 100  # Silero heard speech; nobody was named


def test_more_than_four_at_once_is_not_kept(speech: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    crowd = [(name, 0.0, 20.0) for name in ("a", "b", "c", "d", "e")]
    sealer, kept = capture(speech, crowd, monkeypatch)
    assert kept == [] and sealer.stats.frames_off > 0


def test_a_mix_is_decided_only_once_the_reports_can_have_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What is still held when the mix ends (not yet checked against the whole guard) is
    dropped, not kept: an opted-out person's report could still have been on its way."""
    for window in (20, WINDOW_MS, 2000):
        timing = MixTiming(window)
        assert timing.hold_ms >= timing.guard_ms + window  # the guard's reports are in
        assert timing.hold_ms >= timing.join_ms + window  # and those a cut looks ahead to


def test_a_speaker_group_is_a_participant_id_no_display_name_can_forge() -> None:
    from pipeline.capture.room import participant_label
    from pipeline.errors import InvalidInput
    from pipeline.ids import participant_id

    assert speaker_group(["bob", "ann", "bob"]) == "ann + bob"
    assert participant_id("ann + bob") == "ann + bob"
    assert speakers("ann + bob") == ("ann", "bob") and speakers("ann") == ("ann",)
    for bad in ("bob + ann", "ann + ann", "a + b + c + d + e", "ann +  bob"):
        with pytest.raises(InvalidInput):
            participant_id(bad)
    with pytest.raises(InvalidInput):
        speaker_group(["a", "b", "c", "d", "e"])
    # a participant who calls themselves "ann + bob" is not the group of ann and bob
    assert participant_label("ann + bob") == "ann & bob"
    opted = Meeting("m_0000000000000000", "t_0000000000000000", 0.0, True, frozenset({"bob"}))
    assert opted.transcribes("ann") and not opted.transcribes("ann + bob")
    consent = Meeting(
        "m_0000000000000000",
        "t_0000000000000000",
        0.0,
        True,
        consent_mode="opt-in",
        opted_in=frozenset({"ann"}),
    )
    assert consent.transcribes("ann") and not consent.transcribes("ann + bob")
