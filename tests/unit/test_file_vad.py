"""A file's speech is found by Silero (``pipeline/capture/file.py``): music in a recording is
not sealed as utterances, which the energy rule would seal; speech still is."""

from __future__ import annotations

import numpy as np

from bench.crosstalk import music
from pipeline.audio.decode import decode_file
from pipeline.audio.vad import FRAME_MS, PAD_MS
from pipeline.capture.file import file_segments
from tests.conftest import shared_data


def test_music_is_no_speech_but_speech_is() -> None:
    tune = music(20.0, np.random.default_rng(3)) * 32768 * 10 ** (-22 / 20)
    pcm = np.clip(tune, -32768, 32767).astype("<i2").tobytes()
    assert file_segments(pcm, vad="energy")  # the old rule takes it for speech
    assert file_segments(pcm) == []
    clip = decode_file(sorted(shared_data("fleurs-en").glob("*.ogg"))[0], 60)
    segments = file_segments(bytes(32000) + clip + bytes(32000))
    assert segments and all(s.participant_id == "file" for s in segments)
    # after the second of silence, less the pre-roll (whole 32 ms frames)
    assert segments[0].start_ms >= 1000 - PAD_MS - FRAME_MS
