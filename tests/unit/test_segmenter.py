"""The segmenter's cuts and interims (``pipeline/audio/segmenter.py``): pieces of a long
utterance overlap around each cut while their keep windows tile the speech exactly, interim
utterances come at their cadence and share their final's start, and files get none."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.audio.segmenter import Segmenter, SegmenterConfig, Utterance, pack

RATE = 16000
BYTES_PER_MS = RATE * 2 // 1000


def speech(seconds: float, seed: int = 1) -> bytes:
    """Syllables: 200 ms of noise whose loudness varies, 100 ms of near-quiet, with no pause
    long enough to end an utterance; every sample differs, so a piece's audio tells where
    it came from."""
    rng = np.random.default_rng(seed)
    n = int(RATE * seconds)
    t = np.arange(n)
    envelope = np.where(
        (t // (RATE // 10)) % 3 == 2, 0.02, 0.3 + 0.7 * rng.random(n // 160 + 1)[t // 160]
    )
    samples = rng.normal(0, 6000, n) * envelope
    return np.clip(samples, -32000, 32000).astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return bytes(int(RATE * seconds) * 2)


def run(pcm: bytes, config: SegmenterConfig, chunk: int = 4410) -> list[Utterance]:
    s = Segmenter(config)
    out: list[Utterance] = []
    for i in range(0, len(pcm), chunk):
        out += s.feed(pcm[i : i + chunk])
    return out + list(s.flush())


def finals(utts: list[Utterance]) -> list[Utterance]:
    return [u for u in utts if not u.interim]


def end_ms(u: Utterance) -> int:
    return u.start_ms + len(u.pcm) // BYTES_PER_MS


@pytest.mark.parametrize("max_ms", [15000, 6000, 2500])
def test_keep_windows_of_cut_pieces_tile_the_speech(max_ms: int) -> None:
    lead = 1.0
    pcm = silence(lead) + speech(40) + silence(1.5)
    cfg = SegmenterConfig(max_utterance_ms=max_ms)
    pieces = finals(run(pcm, cfg))
    assert len(pieces) >= 3
    for u in pieces:
        # the start is right: each piece is the stream's audio at its position (the stream
        # padded to whole frames at its end)
        assert u.pcm == (pcm + silence(0.03))[u.start_ms * BYTES_PER_MS : end_ms(u) * BYTES_PER_MS]
        assert len(u.pcm) // BYTES_PER_MS <= max_ms + 30  # (whole frames)
    # the first has no lower bound, the last no upper one, neighbours meet at the cut
    assert pieces[0].keep_from_ms is None and pieces[-1].keep_to_ms is None
    for a, b in itertools.pairwise(pieces):
        assert a.keep_to_ms is not None and a.keep_to_ms == b.keep_from_ms
        cut = a.keep_to_ms
        # both sides hold about a second of the other's audio: a word across it is whole
        overlap = min(1000, max_ms // 3)
        assert end_ms(a) - cut >= overlap - 30 and cut - b.start_ms >= overlap - 30
        assert a.start_ms < cut < end_ms(a) and b.start_ms < cut < end_ms(b)
    # keep windows (None: the piece's own edge) concatenated: no gap, no overlap
    windows = [
        (
            u.keep_from_ms if u.keep_from_ms is not None else u.start_ms,
            u.keep_to_ms if u.keep_to_ms is not None else end_ms(u),
        )
        for u in pieces
    ]
    for (_, to), (frm, _) in itertools.pairwise(windows):
        assert to == frm
    assert abs(windows[0][0] - (lead * 1000 - 240)) <= 30  # the pre-roll
    assert abs(windows[-1][1] - (lead + 40) * 1000 - 240) <= 60  # the padding after


def test_without_overlap_pieces_do_not_overlap() -> None:
    pcm = speech(39.99)  # whole frames
    pieces = finals(run(pcm, SegmenterConfig(max_utterance_ms=15000, overlap_ms=0)))
    assert b"".join(u.pcm for u in pieces) == pcm
    for a, b in itertools.pairwise(pieces):
        assert end_ms(a) == a.keep_to_ms == b.start_ms == b.keep_from_ms


def test_separate_utterances_carry_no_keep_window() -> None:
    pcm = speech(3) + silence(2) + speech(2, seed=2) + silence(1)
    utts = run(pcm, SegmenterConfig(max_utterance_ms=15000))
    assert len(utts) == 2
    assert all(u.keep_from_ms is None and u.keep_to_ms is None and not u.interim for u in utts)


def test_interims_are_off_by_default() -> None:
    utts = run(silence(0.5) + speech(20) + silence(1), SegmenterConfig())
    assert utts and not any(u.interim for u in utts)


def test_interims_come_every_interim_ms_and_share_their_final_start() -> None:
    cfg = SegmenterConfig(interim_ms=1000, max_utterance_ms=25000)
    pcm = silence(1) + speech(5.5) + silence(2) + speech(0.2, seed=3) + silence(2)
    utts = run(pcm, cfg)
    first = [u for u in utts if u.start_ms == utts[0].start_ms]
    # 5.5 s of speech: five interims; the sixth second of new audio falls in the pause
    # that ends it, where an interim would only hold the worker from the final
    assert [u.interim for u in first] == [1, 2, 3, 4, 5, 0]
    final = first[-1]
    for u in first[:-1]:
        # the utterance so far, from its pre-roll start (the same start as its final)
        assert u.pcm == pcm[u.start_ms * BYTES_PER_MS : end_ms(u) * BYTES_PER_MS]
        assert u.keep_from_ms is None and u.keep_to_ms is None
    lengths = [len(u.pcm) // BYTES_PER_MS for u in first[:-1]]
    # a second of new audio between interims (the first also holds the 240 ms pre-roll)
    assert all(abs(b - a - 1000) <= 30 for a, b in itertools.pairwise(lengths))
    assert abs(lengths[0] - 1240) <= 30
    # the short second utterance: no interim (less than a second), just its final
    rest = [u for u in utts if u.start_ms != final.start_ms]
    assert [u.interim for u in rest] == [0]


def test_no_interim_before_min_speech() -> None:
    # 100 ms of sound then quiet frames not long enough to end the utterance: after a
    # second there is less than min_speech_ms of speech, so no interim yet
    cfg = SegmenterConfig(interim_ms=300, end_silence_ms=2000, min_speech_ms=400)
    pcm = silence(0.5) + speech(0.1) + silence(0.6) + speech(1, seed=4) + silence(3)
    utts = run(pcm, cfg)
    interims = [u for u in utts if u.interim]
    assert interims
    # each interim, at the moment it came, held at least 400 ms of speech: the first can
    # come only once the second burst of sound is 300 ms old
    first_end = end_ms(interims[0])
    assert first_end >= 1200 + 300 - 30


def test_interims_of_a_continuing_piece_share_its_start_and_keep_window() -> None:
    cfg = SegmenterConfig(interim_ms=1000, max_utterance_ms=6000)
    pcm = speech(20)
    utts = run(pcm, cfg)
    pieces = finals(utts)
    assert len(pieces) >= 3
    for k, piece in enumerate(pieces):
        mine = [u for u in utts if u.interim and u.start_ms == piece.start_ms]
        # (the last piece may end, with the stream, before interim_ms of new audio)
        assert mine or k == len(pieces) - 1, "every piece cut while in progress had interims"
        assert [u.interim for u in mine] == list(range(1, len(mine) + 1))
        for u in mine:
            assert u.keep_from_ms == piece.keep_from_ms and u.keep_to_ms is None
            assert pcm[u.start_ms * BYTES_PER_MS :].startswith(u.pcm)
    # an interim belongs to the piece in progress: it comes after the previous final
    seen: set[int] = set()
    for u in utts:
        if u.interim:
            assert u.start_ms not in seen
        else:
            seen.add(u.start_ms)


def test_flush_ends_the_piece_in_progress_without_an_interim() -> None:
    cfg = SegmenterConfig(interim_ms=1000, max_utterance_ms=6000)
    pcm = speech(8.01)  # ends mid-speech and mid-frame
    s = Segmenter(cfg)
    fed = list(s.feed(pcm))
    flushed = list(s.flush())
    assert len(flushed) == 1 and not flushed[0].interim
    last = flushed[0]
    previous = finals(fed)[-1]
    assert last.keep_from_ms == previous.keep_to_ms and last.keep_to_ms is None
    assert end_ms(last) >= len(pcm) // BYTES_PER_MS  # padded out to a whole frame
    assert list(s.flush()) == []


def test_flush_of_a_short_utterance_drops_it() -> None:
    s = Segmenter(SegmenterConfig(interim_ms=1000))
    assert [*s.feed(silence(1) + speech(0.06)), *s.flush()] == []


def test_pack_keeps_the_keep_bounds_of_a_windows_edges() -> None:
    pcm = silence(1) + speech(40) + silence(1)
    utts = run(pcm, SegmenterConfig(interim_ms=1000))  # cut at 25 s; interims ignored
    windows = pack(utts, pcm, RATE)
    assert len(windows) == 2 and not any(w.interim for w in windows)
    a, b = windows
    assert a.keep_from_ms is None and a.keep_to_ms is not None
    assert b.keep_from_ms == a.keep_to_ms and b.keep_to_ms is None
    assert b.start_ms < a.keep_to_ms < end_ms(a)
    # short pieces are joined into one window, overlap once, the bounds of its edges kept
    utts = run(pcm, SegmenterConfig(max_utterance_ms=6000))
    windows = pack(utts, pcm, RATE, max_ms=60000)
    assert len(windows) == 1
    assert windows[0].keep_from_ms is None and windows[0].keep_to_ms is None
    assert (
        windows[0].pcm
        == pcm[windows[0].start_ms * BYTES_PER_MS : end_ms(windows[0]) * BYTES_PER_MS]
    )


# -- decisions from a voice detector (Silero in capture) ----------------------------------

FRAME = 512  # samples: 32 ms


def decided(pcm: bytes, speech: list[bool], config: SegmenterConfig) -> list[Utterance]:
    s = Segmenter(config)
    out: list[Utterance] = []
    step = 3 * FRAME * 2  # ~100 ms batches, as capture feeds it
    for i, k in zip(range(0, len(pcm), step), range(0, len(speech), 3), strict=True):
        out += s.feed(pcm[i : i + step], speech[k : k + 3])
    return out + list(s.flush())


def test_given_decisions_replace_the_energy_rule() -> None:
    cfg = SegmenterConfig(frame_ms=32, max_utterance_ms=6000, interim_ms=1000)
    frames = 40 * 1000 // 32
    loud = speech(frames * FRAME / RATE)[: frames * FRAME * 2]
    # loud audio the detector calls no speech: nothing (the energy rule would cut it)
    assert finals(run(loud, cfg)) and decided(loud, [False] * frames, cfg) == []
    # what it calls speech is an utterance, cut and interim-captioned as usual
    mask = [200 <= k < 600 for k in range(frames)]  # 6.4 s .. 19.2 s
    utts = decided(loud, mask, cfg)
    pieces = finals(utts)
    assert len(pieces) >= 3 and any(u.interim for u in utts)
    assert 6400 - cfg.pad_ms <= pieces[0].start_ms <= 6400
    assert pieces[0].keep_from_ms is None and pieces[-1].keep_to_ms is None
    for a, b in itertools.pairwise(pieces):
        assert a.keep_to_ms is not None and a.keep_to_ms == b.keep_from_ms
    assert 19200 <= end_ms(pieces[-1]) <= 19200 + cfg.end_silence_ms + cfg.pad_ms + 32


def test_decisions_must_match_the_frames() -> None:
    s = Segmenter(SegmenterConfig(frame_ms=32))
    with pytest.raises(ValueError, match="2 speech decisions for 3 frames"):
        list(s.feed(silence(3 * 0.032), [True, False]))


def test_lookback_starts_an_utterance_where_the_voice_began() -> None:
    """A detector that calls speech late (Silero from a fresh state, soft onsets): with
    ``lookback_ms`` the utterance starts where the level rose, within the look-back, and
    never before a quiet stretch longer than ``lookback_gap_ms``."""
    cfg = SegmenterConfig(frame_ms=32, pad_ms=0, lookback_ms=1504)
    quiet, loud = silence(3.2), speech(6.4)
    pcm = (quiet + loud + quiet)[: (len(quiet) * 2 + len(loud)) // (FRAME * 2) * FRAME * 2]
    frames = len(pcm) // (FRAME * 2)
    onset = 100  # frame where the audio turns loud (3.2 s)
    for late in (0, 10, 30, 60):  # detector's delay in frames
        mask = [onset + late <= k < onset + 200 for k in range(frames)]
        got = finals(decided(pcm, mask, cfg))
        assert len(got) == 1
        expected = max(onset, onset + late - cfg.lookback_ms // 32) * 32
        assert got[0].start_ms == expected, late
        # without the look-back it starts at the decision
        plain = finals(decided(pcm, mask, SegmenterConfig(frame_ms=32, pad_ms=0)))
        assert plain[0].start_ms == (onset + late) * 32
    # a pause longer than the gap stops the look-back: the earlier sound is not this speech
    f = FRAME * 2  # bytes per frame
    early = quiet[: 85 * f] + loud[: 8 * f] + quiet[: 7 * f]  # a sound at frames 85-92
    pcm = (early + loud + quiet)[: frames * f]
    mask = [onset + 30 <= k < onset + 200 for k in range(frames)]  # look-back reaches 83
    assert finals(decided(pcm, mask, cfg))[0].start_ms == onset * 32
    gapless = SegmenterConfig(frame_ms=32, pad_ms=0, lookback_ms=1504, lookback_gap_ms=320)
    assert finals(decided(pcm, mask, gapless))[0].start_ms == 85 * 32


def test_context_before_an_utterance_can_be_shorter_than_after() -> None:
    """``pre_pad_ms`` sets the context kept before the first speech frame, ``pad_ms`` the
    context after the last (Silero: less room noise before the first word, the fading last
    word kept whole)."""
    frames = 20 * 1000 // 32
    pcm = speech(frames * FRAME / RATE)[: frames * FRAME * 2]
    mask = [100 <= k < 300 for k in range(frames)]  # 3.2 s .. 9.6 s
    for pre, pad in ((256, 384), (480, 480), (0, 96)):
        cfg = SegmenterConfig(frame_ms=32, pad_ms=pad, pre_pad_ms=pre, end_silence_ms=500)
        [utt] = finals(decided(pcm, mask, cfg))
        assert utt.start_ms == 3200 - pre // 32 * 32
        assert end_ms(utt) == 9600 + pad // 32 * 32
    # unset, the same context on both sides
    [utt] = finals(decided(pcm, mask, SegmenterConfig(frame_ms=32, pad_ms=384)))
    assert (utt.start_ms, end_ms(utt)) == (3200 - 384, 9600 + 384)
