"""Interim decoding with the real tiny.en: a short window gives the words of the utterance so
far, a batch of several gives what each alone gives, and an interim that must be trimmed to a
keep window takes the ordinary path with word timings. A lone final in a window of its own
length reads as the padded decode, with word timings, and one that looks failed is decoded
again the ordinary way."""

from __future__ import annotations

import pytest

from bench.wer import normalise, word_errors
from pipeline.audio.decode import decode_file
from pipeline.capture.file import file_segments
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


def test_a_final_in_its_own_length_reads_as_padded_with_word_timings(
    transcriber: Transcriber,
) -> None:
    """A lone final is encoded at its own length plus a second: the words of the padded
    decode (SEALSCRIBE_SHORT_WINDOW_MS=0), with timings inside the utterance, in order."""
    padded = Transcriber(Settings.from_env({"SEALSCRIBE_SHORT_WINDOW_MS": "0"}), cpu_threads=1)
    short_errors = padded_errors = words = 0
    for audio, reference in clips(4):
        short = transcriber.transcribe(audio, "en")
        full = padded.transcribe(audio, "en")
        short_errors += word_errors(reference, normalise(short.text))
        padded_errors += word_errors(reference, normalise(full.text))
        words += len(reference)
        assert short.words and normalise(short.text) == normalise(
            "".join(w.word for w in short.words)
        )
        starts = [w.start_ms for w in short.words]
        assert starts == sorted(starts)
        assert audio.start_ms <= starts[0] and short.words[-1].end_ms <= audio.end_ms
    assert short_errors <= padded_errors + 0.02 * words, (short_errors, padded_errors)


def test_a_short_decode_that_runs_past_the_speech_is_done_again_padded(
    transcriber: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Words the alignment places after the signal (a decoder that went on) are not kept:
    the final is decoded again the ordinary way."""
    ((audio, _),) = clips(1)
    calls: list[int] = []
    ordinary = transcriber.load().transcribe

    def counted(*args: object, **kw: object) -> object:
        calls.append(1)
        return ordinary(*args, **kw)

    monkeypatch.setattr(transcriber.load(), "transcribe", counted)
    transcriber.transcribe(audio, "en")
    assert calls == []  # the short window was enough
    # the same speech followed by nothing: pretend the signal ends mid-sentence
    cut = AudioSegment(audio.participant_id, audio.seq, audio.start_ms, 16000, audio.pcm[:64000])
    monkeypatch.setattr(
        "workers.transcriber._TAIL_S", cut.duration_ms / 1000
    )  # every word now counts as after the signal
    result = transcriber.transcribe(cut, "en")
    assert calls == [1] and result.text


def test_a_quick_speaker_is_heard_to_the_last_word(transcriber: Transcriber) -> None:
    """The length limit leaves room for fast speech: no clip's final or interim stops short
    of its reference by more than a misheard word or two (fleurs-en-009 is ~4.5 tokens a
    second, which the limit once cut after "than those", four words short)."""
    for clip in sorted(shared_data("fleurs-en").glob("*.ogg")):
        reference = normalise(clip.with_suffix(".txt").read_text())
        # as capture cuts it: the utterance only, no leading or trailing quiet
        (audio,) = file_segments(decode_file(clip, 60), "p", vad="energy")
        final = normalise(transcriber.transcribe(audio, "en").text)
        (interim,) = transcriber.transcribe_interims([(audio, "en", False)])
        assert len(final) >= len(reference) - 2, clip.name
        assert len(normalise(interim.text)) >= len(reference) - 2, clip.name
