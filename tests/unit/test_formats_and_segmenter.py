"""Transcript formats and the VAD segmenter, without services."""

from __future__ import annotations

import json
import math
import struct

import pytest

from pipeline.audio.segmenter import Segmenter, SegmenterConfig
from pipeline.formats import render
from pipeline.models import TranscriptSegment, Word

SEGS = [
    TranscriptSegment("p1", 0, 1_500, 4_250, "Hello there.", (Word(1500, 2000, " Hello", 0.9),)),
    TranscriptSegment("p2", 0, 3_723_004, 3_725_000, "A --> B\n\nnext", ()),
    TranscriptSegment("p1", 1, 5_000, 5_100, "   ", ()),
]


def test_vtt_srt_txt_carry_speakers_and_times() -> None:
    names = {"p1": "Alice"}
    vtt = render(SEGS, "vtt", names)
    assert vtt.startswith("WEBVTT\n\n00:00:01.500 --> 00:00:04.250\n<v Alice>Hello there.\n")
    assert "01:02:03.004 --> 01:02:05.000\n<v p2>A -> B next\n" in vtt
    srt = render(SEGS, "srt", names)
    assert srt.startswith("1\n00:00:01,500 --> 00:00:04,250\nAlice: Hello there.\n\n2\n")
    assert render(SEGS, "txt", names).splitlines() == [
        "[00:00:01] Alice: Hello there.",
        "[01:02:03] p2: A -> B next",
    ]
    doc = json.loads(render(SEGS, "json", names))
    assert doc[0]["speaker"] == "Alice" and doc[0]["words"][0]["start_ms"] == 1500
    with pytest.raises(ValueError, match="unknown format 'doc'"):
        render(SEGS, "doc")


def tone(seconds: float, amplitude: float = 8000) -> bytes:
    n = int(16000 * seconds)
    return struct.pack(
        f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * 300 * i / 16000)) for i in range(n))
    )


def silence(seconds: float) -> bytes:
    return bytes(int(16000 * seconds) * 2)


def test_segmenter_splits_at_pauses_and_keeps_timing() -> None:
    s = Segmenter()
    pcm = silence(1) + tone(2) + silence(1.5) + tone(1) + silence(0.5)
    utts = [*s.feed(pcm[:10_000]), *s.feed(pcm[10_000:]), *s.flush()]
    assert len(utts) == 2
    assert abs(utts[0].start_ms - 760) <= 60  # 1 s of silence minus the 240 ms pre-roll
    assert abs(utts[1].start_ms - 4260) <= 60
    assert all(len(u.pcm) % 2 == 0 for u in utts)


def test_segmenter_drops_silence_and_caps_length() -> None:
    s = Segmenter()
    assert [*s.feed(silence(5)), *s.flush()] == []
    # 60 s of "syllables" (200 ms of sound, 100 ms of quiet) with no pause long enough to end
    # an utterance: cut at the 25 s cap, nothing lost. (Without the overlap around cuts,
    # tested in test_segmenter.py, the pieces add up to the speech.)
    speech = (tone(0.2) + silence(0.1)) * 200
    s = Segmenter(SegmenterConfig(overlap_ms=0))
    utts = [*s.feed(speech), *s.flush()]
    assert len(utts) >= 3
    assert all(len(u.pcm) / 32 <= 25_000 for u in utts)
    assert sum(len(u.pcm) for u in utts) == len(speech)
