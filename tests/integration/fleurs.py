"""The fleurs-en accuracy check shared by the WHIP and Janus tests: the ten clips as one
participant's stream, and the word error rate of a meeting's transcript against them."""

from __future__ import annotations

from collections.abc import Sequence

from bench.wer import normalise, word_errors
from pipeline.audio.decode import decode_file
from pipeline.models import TranscriptSegment
from tests.conftest import shared_data

__all__ = ["fleurs_concatenation", "transcript_wer"]

SILENCE_1S = bytes(32000)


def fleurs_concatenation() -> tuple[bytes, list[str]]:
    """The ten fleurs-en clips one after another, a second of silence between them, and the
    normalised reference words."""
    folder = shared_data("fleurs-en")
    pcm, words = b"", []
    for clip in sorted(folder.glob("*.ogg")):
        pcm += decode_file(clip, 60) + SILENCE_1S
        words += normalise(clip.with_suffix(".txt").read_text())
    return pcm, words


def transcript_wer(segments: Sequence[TranscriptSegment], reference: list[str]) -> float:
    hypothesis = normalise(" ".join(s.text for s in segments))
    return word_errors(reference, hypothesis) / len(reference)
