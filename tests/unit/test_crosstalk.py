"""Crosstalk suppression across a meeting's tracks (``pipeline/capture/crosstalk.py``), on
real voices mixed the way microphones in one room pick them up: the same voice on two tracks,
20 dB quieter on one, stays only on the loud one; two different voices at once both stay on
their own tracks; silence and noise give nothing to suppress; the streaming arbiter decides
as the whole-array function does; suppressed frames become silence."""

from __future__ import annotations

import av
import numpy as np
import pytest

from pipeline.audio.decode import decode_file
from pipeline.audio.vad import SileroSpeech, SileroVAD, SpeechGate
from pipeline.capture.crosstalk import (
    FRAME,
    CrosstalkArbiter,
    LiveTrack,
    crosstalk_frames,
    features,
    silence_frames,
)
from tests.conftest import shared_data

RATE = 16000


def voice(*parts: str, seconds: float = 8.0) -> np.ndarray:
    """A real voice, normalised to -20 dBFS over its speech, as floats."""
    x = np.frombuffer(decode_file(shared_data(*parts), 60), dtype="<i2").astype(np.float64)
    x = x[: int(RATE * seconds)] / 32768.0
    out: np.ndarray = x / np.sqrt(np.mean(x * x)) * 0.1
    return out


def pcm(x: np.ndarray) -> bytes:
    return bytes(np.clip(x * 32768, -32768, 32767).astype("<i2").tobytes())


def leak(x: np.ndarray, db: float, delay_ms: float = 4.0) -> np.ndarray:
    """``x`` as another microphone in the room hears it: ``db`` quieter, a little later."""
    d = int(RATE * delay_ms / 1000)
    return np.concatenate([np.zeros(d), x[: x.size - d]]) * 10 ** (db / 20)


def noise(n: int, dbfs: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n) * 10 ** (dbfs / 20)


def speech(data: bytes) -> np.ndarray:
    vad, gate = SileroVAD(), SpeechGate()
    return np.array([gate.decide(p) for p in vad.speech_probs(data)], dtype=bool)


def active(x: np.ndarray, dbfs: float = -40.0) -> np.ndarray:
    """Frames where a clean voice is really speaking (not between words)."""
    return features(pcm(x)).level >= dbfs


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return voice("jfk", "jfk.flac")


@pytest.fixture(scope="module")
def other() -> np.ndarray:
    return voice("fleurs-en", "fleurs-en-001.ogg")


def masks(*tracks: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    data = [pcm(t) for t in tracks]
    talk = [speech(d) for d in data]
    return crosstalk_frames([features(d) for d in data], talk), talk


def test_the_same_voice_20_db_quieter_is_kept_only_on_the_loud_track(jfk: np.ndarray) -> None:
    n = jfk.size
    loud = jfk + noise(n, -65, 1)
    quiet = leak(jfk, -20) + noise(n, -65, 2)
    (m_loud, m_quiet), (_, t_quiet) = masks(loud, quiet)
    assert not m_loud.any()  # the speaker's own microphone keeps every frame
    # every frame the quiet track would call speech is suppressed
    assert t_quiet.sum() > 0
    assert (m_quiet & t_quiet).sum() / t_quiet.sum() >= 0.95
    # and nothing of the voice is left to the segmenter there
    assert (t_quiet & ~m_quiet).sum() <= 2


def level(x: np.ndarray) -> np.ndarray:
    return features(pcm(x)).level


def test_two_voices_at_once_are_both_kept(jfk: np.ndarray, other: np.ndarray) -> None:
    n = min(jfk.size, other.size)
    a, b = jfk[:n], other[:n]
    track_a = a + leak(b, -20) + noise(n, -65, 3)
    track_b = b + leak(a, -20) + noise(n, -65, 4)
    (m_a, m_b), _ = masks(track_a, track_b)
    both = active(a) & active(b)
    assert both.sum() > 50  # they really talk over each other
    # A frame where one voice is 10 dB or more below the other is mostly the other's leak
    # on that track too; where a voice is within 10 dB of the other, its own track keeps it.
    for mask, own, over in ((m_a, a, b), (m_b, b, a)):
        present = both & (level(own) - level(over) >= -10)
        assert (present & ~mask).sum() / present.sum() >= 0.95
        # and each voice's own frames are kept on its own track
        assert (active(own) & mask).sum() / active(own).sum() <= 0.1


def test_a_quieter_talker_over_a_louder_one_is_kept(jfk: np.ndarray, other: np.ndarray) -> None:
    """One microphone's gain 12 dB lower: its talker is barely above the leak there."""
    n = min(jfk.size, other.size)
    a, b = jfk[:n] * 10 ** (-12 / 20), other[:n]
    track_a = a + leak(b, -26) + noise(n, -70, 5)
    track_b = b + leak(a, -20) + noise(n, -65, 6)
    (m_a, m_b), _ = masks(track_a, track_b)
    present = active(a, -52) & active(b) & (level(a) - level(b) >= -10)
    assert present.sum() > 30
    assert (present & ~m_a).sum() / present.sum() >= 0.9
    assert (present & ~m_b).sum() == present.sum()


def test_a_faint_copy_before_a_sound_of_the_quiet_tracks_own_is_taken(jfk: np.ndarray) -> None:
    """A headset that hears the talker 36 dB down, then a laugh of its own wearer: the laugh
    in the envelope window spoils the copy test, but the faint stretch before it, which its
    own detector does not call speech, is the talker's voice (``certain_db``). Frames the
    quiet track's detector calls speech are never taken on level alone."""
    n = jfk.size
    a = pcm(jfk + noise(n, -70, 1))
    talk_a = speech(a)
    loud = talk_a & (features(a).level[: talk_a.size] >= -40)
    k = next(k for k in range(16, loud.size) if loud[k - 16 : k].sum() >= 12)
    at = k * FRAME  # the laugh starts after half a second of the talker's speech
    laugh = np.zeros(n)
    laugh[at : at + RATE // 2] = noise(RATE // 2, -18, 3)
    b = pcm(leak(jfk, -36) + laugh + noise(n, -75, 2))
    frames = min(talk_a.size, features(b).level.size)
    talk_a = talk_a[:frames]
    own = np.zeros(frames, dtype=bool)
    own[k : k + RATE // 2 // FRAME] = True  # the laugh, called speech
    before = np.zeros(frames, dtype=bool)
    before[k - 16 : k] = True
    before &= loud[:frames]
    assert before.sum() >= 12
    _, m_b = crosstalk_frames([features(a), features(b)], [talk_a, own])
    assert m_b[before].all()
    assert not m_b[own].any()
    # the same frames called speech on the quiet track are left to the copy tests
    _, m_b = crosstalk_frames([features(a), features(b)], [talk_a, own | before])
    assert not m_b[own].any()


def opus(x: np.ndarray) -> np.ndarray:
    """``x`` after an Opus round trip at 48 kHz, as a WebRTC publisher delivers it."""
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = 48000, "mono", "s16", 32000
    dec = av.CodecContext.create("opus", "r")
    dec.sample_rate, dec.layout = 48000, "mono"
    up = av.AudioResampler(format="s16", layout="mono", rate=48000)
    down = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    samples = np.frombuffer(pcm(x), dtype="<i2")
    out = []
    for at in range(0, samples.size, 320):
        frame = av.AudioFrame.from_ndarray(
            samples[at : at + 320].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        for packet in (p for f in up.resample(frame) for p in enc.encode(f)):
            out += [
                r.to_ndarray().reshape(-1) for d in dec.decode(packet) for r in down.resample(d)
            ]
    return np.concatenate(out).astype(np.float64)[: x.size] / 32768


def test_two_people_starting_alike_at_once_keep_their_words() -> None:
    """Two remote participants, nothing leaking between them, in the same synthetic voice
    (espeak-ng, through Opus), each saying a sentence that starts "The ..." at the same
    moment or a little apart: the envelopes rise, pause and stress together, so envelope
    correlation alone took up to 11 frames of one track (the privacy suite's canary word
    came back "Windwick", then "Pintwick"); with the gain test up to 6. A quiet "f" under
    a loud "o" is another sound, not a copy: the spectrum test keeps it, and at most a few
    frames of a word's onset go."""
    from tests.privacy.speech import PHRASES, require_espeak, speak

    require_espeak()
    said = [
        opus(np.frombuffer(speak(p), dtype="<i2").astype(np.float64) / 32768)
        for p in PHRASES.values()
    ]
    taken = frames = worst = 0
    for i, a in enumerate(said):
        for b in said[i + 1 :]:
            for offset in (0, 320, 960, 1600, 4800):  # samples: up to 0.3 s apart
                n = max(a.size, b.size + offset) + RATE
                track_a, track_b = np.zeros(n), np.zeros(n)
                track_a[: a.size] = a
                track_b[offset : offset + b.size] = b
                m, talk = masks(track_a, track_b)
                for mask, t in zip(m, talk, strict=True):
                    k = int((mask & t).sum())
                    taken, frames, worst = taken + k, frames + int(t.sum()), max(worst, k)
    assert frames > 2000
    assert worst <= 3, f"{worst} speech frames of one track taken for crosstalk"
    assert taken / frames <= 0.01, f"{taken} of {frames} speech frames taken for crosstalk"


def test_silence_and_noise_give_nothing_to_suppress() -> None:
    n = RATE * 5
    hiss = noise(n, -45, 7)
    for tracks in (
        (np.zeros(n), np.zeros(n)),
        (hiss, leak(hiss, -20)),  # one noise heard by both, no voice
        (noise(n, -50, 8), noise(n, -30, 9)),
    ):
        m, talk = masks(*tracks)
        assert not any(t.any() for t in talk)
        assert not any(x.any() for x in m)


def test_one_track_is_never_suppressed(jfk: np.ndarray) -> None:
    m, _ = masks(jfk)
    assert not m[0].any()


def test_the_arbiter_streams_what_the_function_decides(jfk: np.ndarray) -> None:
    n = jfk.size
    tracks = [pcm(jfk + noise(n, -65, 1)), pcm(leak(jfk, -20) + noise(n, -65, 2))]
    talk = [speech(t) for t in tracks]
    whole = crosstalk_frames([features(t) for t in tracks], talk)
    arbiter = CrosstalkArbiter(history_frames=4096)
    detectors = {"a": SileroSpeech(), "b": SileroSpeech()}
    batch = 3200  # 100 ms as capture resamples it: not whole frames
    frames = min(t.size for t in talk)
    for start in range(0, frames * FRAME * 2, batch):
        for name, data in zip(("a", "b"), tracks, strict=True):
            piece = data[start : start + batch]
            arbiter.push(name, piece, detectors[name].decide(piece), 0 if not start else None)
    assert arbiter.reached("a") == arbiter.reached("b") == frames
    for name, expected in zip(("a", "b"), whole, strict=True):
        got = arbiter.crosstalk(name, 0, frames)
        assert (got == expected[:frames]).mean() >= 0.99
    # a stretch nobody else reached yet is kept whole
    assert not arbiter.crosstalk("b", frames, 10).any()


def test_the_arbiter_forgets_beyond_its_history() -> None:
    arbiter = CrosstalkArbiter(history_frames=16)
    arbiter.push("a", bytes(FRAME * 2 * 40), [False] * 40, first_frame=0)
    assert arbiter._tracks["a"].first == 24
    arbiter.push("a", bytes(FRAME * 2), [False])  # continues
    assert arbiter._tracks["a"].end == 41
    arbiter.push("a", bytes(FRAME * 2), [False], first_frame=100)  # a gap: start again
    assert arbiter._tracks["a"].first == 100
    arbiter.remove("a")
    assert arbiter.reached("b") == 1 << 62


def test_live_tracks_release_what_the_function_decides(jfk: np.ndarray) -> None:
    """Two tracks through LiveTrack, the quiet one 200 ms late: the loud one waits for it,
    and what each hands the segmenter is its voice decisions less the crosstalk, with the
    crosstalk frames already silence; the loud one ends first, and the quiet one's last
    frames are still compared with it."""
    n = jfk.size
    tracks = [pcm(jfk + noise(n, -65, 1)), pcm(leak(jfk, -20) + noise(n, -65, 2))]
    talk = [speech(t) for t in tracks]
    whole = crosstalk_frames([features(t) for t in tracks], talk)
    arbiter = CrosstalkArbiter()
    live = [LiveTrack(SileroSpeech(), arbiter, name, first_frame=7) for name in "ab"]
    got: list[tuple[bytearray, list[bool]]] = [(bytearray(), []), (bytearray(), [])]
    batch = 3200
    for step in range(len(tracks[0]) // batch + 3):
        for k, late in ((0, 0), (1, 2)):
            i = (step - late) * batch
            if 0 <= i < len(tracks[k]):
                data, flags = live[k].feed(tracks[k][i : i + batch])
                assert len(data) == len(flags) * FRAME * 2
                got[k][0].extend(data)
                got[k][1].extend(flags)
                if k == 0 and 0 < step < 10:  # waits for the late track, within max_wait
                    assert len(got[0][1]) <= len(got[1][1]) + live[0].max_wait
    for k in range(2):
        data, flags = live[k].flush()
        got[k][0].extend(data)
        got[k][1].extend(flags)
    assert arbiter.reached("x") == 1 << 62  # both left the arbiter
    for k in range(2):
        frames = len(got[k][1])
        assert frames == talk[k].size
        assert got[k][1] == (talk[k] & ~whole[k]).tolist()
        silent = np.frombuffer(bytes(got[k][0]), dtype="<i2").reshape(frames, FRAME)
        assert (silent[whole[k]] == 0).all()
    assert not any(got[1][1])  # the quiet copy gives the segmenter nothing


def test_a_live_track_alone_passes_its_decisions_on(jfk: np.ndarray) -> None:
    data = pcm(jfk)
    track = LiveTrack(SileroSpeech(), None, "a", first_frame=0)
    out, flags = track.feed(data[:5000])
    more, rest = track.feed(data[5000:])
    assert out + more == data[: len(flags + rest) * FRAME * 2]
    assert flags + rest == speech(data).tolist()
    assert track.flush() == (b"", [])


def test_suppressed_frames_become_silence() -> None:
    data = pcm(np.full(FRAME * 4, 0.25))
    out = silence_frames(data, np.array([False, True, False, True]))
    x = np.frombuffer(out, dtype="<i2").reshape(4, FRAME)
    assert (x[[1, 3]] == 0).all() and (x[[0, 2]] != 0).all()
    assert len(out) == len(data)


def test_a_live_track_rebased_earlier_moves_what_it_pushed() -> None:
    """Capture learns after a stream's first frames where it really started: the track's
    history moves with it, so it is compared with the others at the right time."""
    arbiter = CrosstalkArbiter()
    a = LiveTrack(SileroSpeech(), arbiter, "a", first_frame=20)
    b = LiveTrack(SileroSpeech(), arbiter, "b", first_frame=10)
    a.feed(bytes(FRAME * 2 * 30))
    b.feed(bytes(FRAME * 2 * 30))
    assert arbiter.reached("b") == 50 and arbiter.reached("a") == 40
    a.rebase(12)
    assert a.first_frame == 12 and arbiter.reached("b") == 42
    a.rebase(12)  # nothing new
    assert arbiter.reached("b") == 42
