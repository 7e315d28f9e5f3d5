"""Cuts of a long live utterance lose no words (issue 16): ~30 s of continuous speech (three
fleurs-en clips back to back, no pause between them) published over WHIP is cut at
SEALSCRIBE_MAX_SEGMENT_MS into pieces that overlap around each cut and keep only their own
words; a real worker transcribes them. The live transcript must be as accurate as the same
audio transcribed as a file, and around every cut it must hold each word the file's
transcript holds there, once."""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from bench.wer import normalise, word_errors
from pipeline import services
from pipeline.audio.decode import decode_file
from pipeline.capture.file import capture_segments, file_segments
from pipeline.capture.sealer import Sealer
from pipeline.config import Settings
from pipeline.models import AudioSegment, TranscriptSegment
from pipeline.runtime import Runtime
from pipeline.services.transcripts import read_transcript
from tests.conftest import shared_data
from tests.harness.processes import WorkerProcess
from tests.integration.test_live import publish_all, transcribed

pytestmark = [pytest.mark.usefixtures("loopback_ice"), pytest.mark.timeout(660)]

#: clips whose speech runs from near their first frame to near their last, so the three back
#: to back are one utterance of ~31 s the segmenter must cut (twice, at the default 15 s)
CLIPS = ("fleurs-en-001", "fleurs-en-005", "fleurs-en-008")
#: how near a cut a word must be to be checked (ms), and the slack allowed for the two
#: transcriptions placing the same word a little differently
NEAR_MS = 1500
SLACK_MS = 500


@pytest.fixture
def rt(env: dict[str, str]) -> Runtime:
    # interim captions off: this test is about the cuts of finals, and interims cost a worker.
    # The voice detector finds the ~1.8 s between two clips (their own lead-in and tail) to
    # be no speech: a longer end-of-utterance pause keeps the three one utterance to cut.
    return Runtime.from_settings(
        Settings.from_env(
            {**env, "SEALSCRIBE_INTERIM_MS": "0", "SEALSCRIBE_END_SILENCE_MS": "2500"}
        ),
        actor="test",
    )


@dataclass(frozen=True)
class Piece:
    start_ms: int
    end_ms: int
    keep_from_ms: int | None
    keep_to_ms: int | None


def speech() -> tuple[bytes, list[str]]:
    folder = shared_data("fleurs-en")
    pcm, words = b"", []
    for name in CLIPS:
        pcm += decode_file(folder / f"{name}.ogg", 60)
        words += normalise((folder / f"{name}.txt").read_text())
    return pcm, words


def timed_words(
    segments: Sequence[TranscriptSegment], shift_ms: int = 0
) -> list[tuple[str, float]]:
    """Each normalised word of the transcript with its middle (ms), less ``shift_ms``."""
    out = []
    for s in segments:
        for w in s.words:
            for token in normalise(w.word):
                out.append((token, (w.start_ms + w.end_ms) / 2 - shift_ms))
    return out


def near(words: list[tuple[str, float]], at: float, within: float) -> Counter[str]:
    return Counter(w for w, t in words if abs(t - at) <= within)


def test_a_long_utterance_is_cut_without_losing_or_repeating_words(
    rt: Runtime, worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert rt.settings.max_segment_ms == 15000 and rt.settings.interim_ms == 0
    pcm, reference = speech()
    assert len(pcm) / 32000 > 30

    # The pieces capture hands the sealer (positions only), to know where the cuts fell.
    pieces: list[Piece] = []
    submit = Sealer.submit

    async def recording(self: Sealer, segment: AudioSegment) -> None:
        pieces.append(
            Piece(segment.start_ms, segment.end_ms, segment.keep_from_ms, segment.keep_to_ms)
        )
        await submit(self, segment)

    monkeypatch.setattr(Sealer, "submit", recording)

    tenant, token = services.create_tenant(rt, "acme")
    live = services.create_meeting(rt, tenant.id, transcription=True)
    asyncio.run(publish_all(rt, token, live.id, {"reader": pcm}, speed=2.0))
    transcribed(rt, live.id)
    live_segments = read_transcript(rt, live.id)
    monkeypatch.undo()

    recorded = services.create_meeting(rt, tenant.id, transcription=True)
    capture_segments(rt, recorded, file_segments(pcm))
    transcribed(rt, recorded.id)
    file_segments_ = read_transcript(rt, recorded.id)

    live_wer = word_errors(reference, normalise(" ".join(s.text for s in live_segments)))
    file_wer = word_errors(reference, normalise(" ".join(s.text for s in file_segments_)))
    cuts = [p.keep_to_ms for p in pieces if p.keep_to_ms is not None]
    print(
        f"{len(reference)} words; live: {len(pieces)} pieces, cuts at "
        f"{[c - pieces[0].start_ms for c in cuts]} ms into the utterance, "
        f"{live_wer} errors; file: {file_wer} errors"
    )
    # Live times are meeting times, file times offsets into ``pcm``: the shift between them
    # is where the stream began, found from the words both transcripts share.
    file_words = timed_words(file_segments_)
    coarse = pieces[0].start_ms - file_segments(pcm)[0].start_ms
    shifts = [
        lt - ft
        for lw, lt in timed_words(live_segments)
        for fw, ft in file_words
        if lw == fw and abs(lt - ft - coarse) <= 1000
    ]
    shift = round(statistics.median(shifts)) if shifts else coarse
    live_words = timed_words(live_segments, shift)
    lost, repeated = Counter[str](), Counter[str]()
    for cut in cuts:
        at = cut - shift
        lost += near(file_words, at, NEAR_MS) - near(live_words, at, NEAR_MS + SLACK_MS)
        repeated += near(live_words, at, NEAR_MS) - near(file_words, at, NEAR_MS + SLACK_MS)
    # (counts only: even test data's words stay out of logs)
    print(f"around the cuts: {lost.total()} words lost, {repeated.total()} repeated")

    assert len(cuts) >= 2, "~31 s of speech is cut at least twice at 15 s"
    assert not lost, "every word the file's transcript has near a cut is in the live one"
    assert not repeated, "no word near a cut is in the live transcript twice"
    # Within a point of the file's WER, or one word where a point is less than a word (64
    # words: one is 1.6 points). The pieces are decoded apart and the file in one window, so
    # Whisper may write one word differently ("two" / "2"), which a cut did not cause; what
    # a cut would cause, a word lost or repeated around it, is checked above word by word.
    allowed = max(0.01 * len(reference), 1)
    assert live_wer - file_wer <= allowed, (live_wer, file_wer)
    for a, b in itertools.pairwise(pieces):
        edge = a.keep_to_ms
        assert edge is not None and edge == b.keep_from_ms, "the keep windows meet at each cut"
        # each piece holds about a second of audio beyond the cut
        assert b.start_ms <= edge - 900 and a.end_ms >= edge + 900
