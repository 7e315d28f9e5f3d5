"""Streaming Silero voice detection (``pipeline/audio/vad.py``) with the model faster-whisper
ships: real speech is speech, silence and steady noise or music are not, a stream fed in
pieces of any size gives the probabilities of one call, and the gate's hysteresis holds."""

from __future__ import annotations

import numpy as np

from pipeline.audio.decode import decode_file
from pipeline.audio.vad import FRAME_SAMPLES, GateConfig, SileroSpeech, SileroVAD, SpeechGate
from tests.conftest import shared_data

RATE = 16000


def jfk() -> bytes:
    return decode_file(shared_data("jfk", "jfk.flac"), 60)


def decisions(pcm: bytes, chunk: int = 3200) -> list[bool]:
    vad, gate = SileroVAD(), SpeechGate()
    probs: list[float] = []
    for i in range(0, len(pcm), chunk):
        probs += vad.speech_probs(pcm[i : i + chunk])
    return [gate.decide(p) for p in probs]


def pink(seconds: float, dbfs: float, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(RATE * seconds)
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[1:] /= np.sqrt(np.arange(1, spec.size))
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    out: np.ndarray = x / np.sqrt(np.mean(x * x)) * 10 ** (dbfs / 20)
    return out


def to_pcm(x: np.ndarray) -> bytes:
    return bytes(np.clip(x * 32768, -32768, 32767).astype("<i2").tobytes())


def test_speech_is_speech() -> None:
    flags = decisions(jfk())
    # JFK's 11 s are mostly speech with short pauses
    assert len(flags) == len(jfk()) // 2 // FRAME_SAMPLES
    assert sum(flags) / len(flags) > 0.6


def test_pieces_of_any_size_give_the_same_probabilities() -> None:
    pcm = jfk()[: RATE * 2 * 4]
    whole = SileroVAD().speech_probs(pcm)
    vad = SileroVAD()
    pieces: list[float] = []
    for i in range(0, len(pcm), 2 * 777):  # 777 samples: not a multiple of the frame
        pieces += vad.speech_probs(pcm[i : i + 2 * 777])
    assert len(pieces) == len(whole) == len(pcm) // 2 // FRAME_SAMPLES
    assert np.allclose(pieces, whole, atol=1e-4)


def test_reset_forgets_the_stream() -> None:
    pcm = jfk()[: RATE * 2 * 2]
    vad = SileroVAD()
    first = vad.speech_probs(pcm)
    vad.reset()
    assert np.allclose(vad.speech_probs(pcm), first, atol=1e-5)


def test_silence_is_not_speech_and_never_reaches_the_model() -> None:
    vad = SileroVAD()
    probs = vad.speech_probs(bytes(RATE * 2 * 3))
    assert len(probs) == RATE * 3 // FRAME_SAMPLES
    assert max(probs) == 0.0
    assert vad.chunks_run == 0  # the level gate kept it from the model


def test_steady_noise_and_tones_are_not_speech() -> None:
    t = np.arange(RATE * 10) / RATE
    hum = 0.1 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.sin(2 * np.pi * 330 * t)
    for x in (pink(10, -30), hum, hum + pink(10, -40)):
        flags = decisions(to_pcm(x))
        assert sum(flags) == 0, sum(flags)


def test_decisions_come_per_frame_with_levels() -> None:
    pcm = jfk()[: RATE * 2 * 2]
    detector = SileroSpeech()
    flags = detector.decide(pcm[:3000]) + detector.decide(pcm[3000:])
    assert flags == decisions(pcm, chunk=len(pcm))
    assert len(detector.levels) == len(flags) - len(pcm[:3000]) // 2 // FRAME_SAMPLES
    detector.reset()
    assert detector.decide(pcm) == flags


def test_the_gate_has_hysteresis() -> None:
    gate = SpeechGate(GateConfig(start=0.5, stay=0.35))
    seq = [0.4, 0.6, 0.4, 0.36, 0.34, 0.4, 0.5]
    assert [gate.decide(p) for p in seq] == [False, True, True, True, False, False, True]
    gate.reset()
    assert gate.decide(0.4) is False


def test_speech_after_digital_silence_is_found_as_from_a_fresh_start() -> None:
    """Carried over a gap of zeros, the model's state kept the next words' probability near
    0 for up to two seconds; after a quarter second of digital silence it starts afresh."""
    from pipeline.audio.decode import decode_file
    from tests.conftest import shared_data

    clips = sorted(shared_data("fleurs-en").glob("*.ogg"))
    first, second = decode_file(clips[1], 60), decode_file(clips[2], 60)
    gap = bytes(RATE * 2 * 3 // 2)  # 1.5 s of zeros
    stream = decisions(first + gap + second)
    after = stream[(len(first) + len(gap)) // 2 // FRAME_SAMPLES :]
    fresh = decisions(second)
    onset = fresh.index(True)
    assert after.index(True) <= onset + 2, (after.index(True), onset)
