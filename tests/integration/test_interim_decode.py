"""Interim decoding with the real tiny.en: a short window gives the words of the utterance so
far, a batch of several gives what each alone gives, and an interim that must be trimmed to a
keep window takes the ordinary path with word timings."""

from __future__ import annotations

import pytest

from bench.wer import normalise, word_errors
from pipeline.audio.decode import decode_file
from pipeline.config import Settings
from pipeline.models import AudioSegment
from tests.conftest import shared_data
from workers.transcriber import Transcriber


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    t = Transcriber(Settings.from_env({}), cpu_threads=1)
    t.load()
    return t


def clips(n: int) -> list[tuple[AudioSegment, list[str]]]:
    out = []
    for i, clip in enumerate(sorted(shared_data("fleurs-en").glob("*.ogg"))[1 : n + 1]):
        audio = AudioSegment(f"p{i}", 1000 * i, 1000 * i, 16000, decode_file(clip, 60), part=i + 1)
        out.append((audio, normalise(clip.with_suffix(".txt").read_text())))
    return out


def test_a_batch_of_interims_reads_as_each_alone(transcriber: Transcriber) -> None:
    given = clips(3)
    alone = [transcriber.transcribe_interims([(a, "en", False)])[0] for a, _ in given]
    together = transcriber.transcribe_interims([(a, "en", False) for a, _ in given])
    assert [t.text for t in together] == [t.text for t in alone]
    for (audio, reference), result in zip(given, together, strict=True):
        assert (result.participant_id, result.seq, result.part) == (
            audio.participant_id,
            audio.seq,
            audio.part,
        )
        assert result.words == ()  # no alignment pass for an interim
        assert word_errors(reference, normalise(result.text)) / len(reference) < 0.2


def test_an_interim_with_a_keep_window_is_trimmed_by_its_words(
    transcriber: Transcriber,
) -> None:
    ((audio, _),) = clips(1)
    half = audio.start_ms + audio.duration_ms // 2
    trimmed = AudioSegment(
        audio.participant_id, audio.seq, audio.start_ms, 16000, audio.pcm, keep_from_ms=half
    )
    whole = transcriber.transcribe_interims([(audio, "en", False)])[0]
    kept = transcriber.transcribe_interims([(trimmed, "en", False)])[0]
    assert kept.words and all((w.start_ms + w.end_ms) / 2 >= half for w in kept.words)
    assert 0 < len(normalise(kept.text)) < len(normalise(whole.text))
