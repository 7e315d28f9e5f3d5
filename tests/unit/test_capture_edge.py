"""Capture-edge rules that need no network: participant labels, WHIP offer checks, ICE
host restriction, and the segmenter batch path fed with synthetic 48 kHz frames."""

from __future__ import annotations

import asyncio
import time

import aioice.ice
import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from pipeline.capture.ice import configure_ice, ice_hosts, rtc_configuration
from pipeline.capture.room import MAX_LABEL, participant_label
from pipeline.capture.track import TrackCapture
from pipeline.capture.whip import MAX_MEDIA_SECTIONS, MAX_OFFER_BYTES, BoundedTrack, check_offer
from pipeline.errors import InvalidInput
from pipeline.models import AudioSegment


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("Alice", "Alice"),
        ("  Bob\n\tSmith  ", "Bob Smith"),
        ("\x00\x1b[31m", "[31m"),
        ("", "participant"),
        (None, "participant"),
        ("\u200b", "participant"),
        ("Zoë", "Zoë"),
    ],
)
def test_participant_labels_are_printable_one_line(name: str | None, label: str) -> None:
    assert participant_label(name) == label


def test_participant_labels_are_bounded() -> None:
    assert len(participant_label("x" * 1000)) == MAX_LABEL


AUDIO_OFFER = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


def test_offer_checks() -> None:
    check_offer(AUDIO_OFFER)
    with pytest.raises(InvalidInput, match="no audio"):
        check_offer(AUDIO_OFFER.replace("m=audio", "m=video"))
    with pytest.raises(InvalidInput, match="v=0"):
        check_offer("<html>")
    with pytest.raises(InvalidInput, match=str(MAX_OFFER_BYTES)):
        check_offer(AUDIO_OFFER + "a=x\r\n" * MAX_OFFER_BYTES)
    video = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    check_offer(AUDIO_OFFER + video * (MAX_MEDIA_SECTIONS - 1))
    with pytest.raises(InvalidInput, match=f"has {MAX_MEDIA_SECTIONS + 1} media sections"):
        check_offer(AUDIO_OFFER + video * MAX_MEDIA_SECTIONS)


def test_the_consumed_whip_track_holds_a_bounded_backlog() -> None:
    class Remote(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self._queue: asyncio.Queue[int | None] = asyncio.Queue()

        async def recv(self) -> av.AudioFrame:
            item = await self._queue.get()
            if item is None:
                raise MediaStreamError
            frame = av.AudioFrame(format="s16", layout="mono", samples=1)
            frame.pts = item
            return frame

    async def main() -> None:
        remote = Remote()
        for i in range(25):
            remote._queue.put_nowait(i)
        remote._queue.put_nowait(None)
        track = BoundedTrack(remote, limit=10)
        first = await track.recv()
        assert first.pts == 16 and track.dropped == 16  # the oldest went; the end stays
        rest = []
        with pytest.raises(MediaStreamError):
            while True:
                rest.append((await track.recv()).pts)
        assert rest == list(range(17, 25))

    asyncio.run(main())


def test_ice_hosts_restrict_gathering_and_no_stun_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SEALSCRIBE_STUN", raising=False)
    assert rtc_configuration().iceServers == []
    try:
        configure_ice("127.0.0.1, ::1")
        assert ice_hosts() == ("127.0.0.1", "::1")
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    finally:
        configure_ice("")
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)


class Frames(MediaStreamTrack):
    kind = "audio"

    def __init__(self, frames: list[av.AudioFrame]) -> None:
        super().__init__()
        self.frames = frames

    async def recv(self) -> av.AudioFrame:
        if not self.frames:
            raise MediaStreamError
        return self.frames.pop(0)


class Policy:
    def __init__(self, on: bool) -> None:
        self.on = on
        self.meeting = type("M", (), {"created": time.time()})()

    def transcribes(self, participant: str) -> bool:
        return self.on


class FakeSealer:
    """Stands in for the Sealer (a collaborator: sealing is tested elsewhere)."""

    def __init__(self, on: bool) -> None:
        self.policy = Policy(on)
        self.stats = type("S", (), {"frames": 0, "frames_off": 0})()
        self.rt = type(
            "R",
            (),
            {
                "settings": type(
                    "T",
                    (),
                    {
                        "max_segment_ms": 15000,
                        "end_silence_ms": 500,
                        "interim_ms": 0,
                        "vad": "energy",
                    },
                )()
            },
        )()
        self.got: list[tuple[int, int]] = []

    async def submit(self, segment: AudioSegment) -> None:
        assert segment.participant_id == "ann" and segment.seq == segment.start_ms
        self.got.append((segment.start_ms, len(segment.pcm)))


def stereo_48k(seconds: float, tone: bool, pts: int) -> list[av.AudioFrame]:
    frames = []
    for i in range(int(seconds * 50)):
        t = (np.arange(960) + (pts + i) * 960) / 48000
        mono = (8000 * np.sin(2 * np.pi * 220 * t) if tone else np.zeros(960)).astype(np.int16)
        f = av.AudioFrame.from_ndarray(
            np.repeat(mono, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        f.sample_rate, f.pts = 48000, (pts + i) * 960
        frames.append(f)
    return frames


@pytest.mark.parametrize("on", [True, False])
def test_track_capture_cuts_48k_stereo_into_16k_utterances(on: bool) -> None:
    frames = stereo_48k(1.0, False, 0) + stereo_48k(2.0, True, 50) + stereo_48k(1.5, False, 150)
    sealer = FakeSealer(on)
    asyncio.run(TrackCapture(sealer, "ann", Frames(frames)).run())  # type: ignore[arg-type]
    assert sealer.stats.frames == 225
    if not on:
        assert sealer.got == [] and sealer.stats.frames_off == 225
        return
    assert len(sealer.got) == 1
    start_ms, nbytes = sealer.got[0]
    # the tone starts at 1.0 s; the utterance keeps a short pre-roll and lasts ~2 s at 16 kHz
    assert 600 <= start_ms <= 1000
    assert 2.0 * 32000 <= nbytes <= 3.2 * 32000
