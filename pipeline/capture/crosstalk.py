"""Crosstalk suppression across the tracks of one meeting: one voice, one speaker.

In a room with several microphones (AMI headsets, laptops of a hybrid meeting) each track
also carries the people near it. Whisper transcribes that leakage as well, so one sentence
shows up under several speakers. The rule here: at each 32 ms frame, a track whose audio is
``margin_db`` or more quieter than another track that carries speech at that moment *and*
whose short-time level envelope follows that track's (normalised cross-correlation of 8 ms
log-level envelopes over a window of about half a second, best lag within ``max_lag_ms``)
at one steady gain below it (their level difference varies by at most ``max_spread_db``),
*and* whose spectrum at that frame has the louder track's shape (band levels correlated at
``min_spectral_corr``) carries crosstalk: that frame is not its speech. Someone who talks
over another keeps their frames: their own track's envelope follows their own voice, not
the other's, so the correlation stays low, and their own microphone has them loudest; two
people who start alike at once ("The ...") say different sounds a moment later (a quiet
"f" under a loud "o"), which the spectrum tells apart. A frame ``certain_db`` or more
quieter than a speaking track, where the track's own detector hears no speech, is crosstalk
on level alone: a cough or a laugh of its own wearer in the envelope window spoils the copy
test, and the look-back and pads would put the faint copy before it into an utterance.

What is suppressed is dropped in memory, as audio of an "off" period is: a crosstalk frame
does not count as speech for the segmenter, and inside an utterance it is replaced by
silence before sealing (:func:`silence_frames`), so it is never sealed, stored or transcribed.

Where the comparison happens: in the process that holds all of a meeting's tracks, i.e. the
meeting's :class:`~pipeline.capture.room.MeetingRoom` holds one :class:`CrosstalkArbiter`.
A Janus bot receives every track of its room in one process. WHIP sessions of one meeting
share the room of the API process that answered them, so a meeting's WHIP sessions must
land on one process (the process that opened the meeting's room holds it; another process
answers an offer for that meeting with a redirect to it, RFC 9725 section 4.5); a track
that cannot be compared (the only one in its process) is kept whole, never dropped.

Pure numpy and cheap: per frame and track a 512-sample mean square, four 128-sample ones
and a 512-point FFT summed into 16 bands; correlations only at frames where another
speaking track is ``margin_db`` louder, and only with the ``sources`` loudest speaking
tracks (linear, not quadratic, in the tracks of a meeting). Measured (``python -m
bench.crosstalk --cost``, 4 AMI tracks, decisions every 100 ms): Silero + arbiter about
1 % of a core per track, of which the arbiter about half.
:func:`crosstalk_frames` works on aligned arrays (a file, a benchmark);
:class:`CrosstalkArbiter` keeps a bounded history per track in meeting time for live
capture, and decides exactly as :func:`crosstalk_frames` does on the whole tracks. It holds
levels (per frame, per 8 ms and per band) and speech flags, never audio, and only of
tracks being transcribed (a track of a participant who is off pushes nothing, as its
frames are dropped on arrival).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "CrosstalkArbiter",
    "CrosstalkConfig",
    "Features",
    "LiveTrack",
    "SpeechDecider",
    "crosstalk_frames",
    "features",
    "silence_frames",
]

FRAME = 512  # samples: the VAD's 32 ms frame at 16 kHz
#: band edges (FFT bins of a 512-sample frame, 31.25 Hz each): about a third of an octave
#: wide from 125 Hz to 7 kHz, where a voice's formants and fricatives lie
_EDGES = np.unique(np.geomspace(4, 224, 17).round().astype(int))
BANDS = _EDGES.size - 1
_WINDOW = np.hanning(FRAME).astype(np.float32)
SUB = 4  # envelope points per frame (8 ms each)
_MIN_LOUD = 6  # envelope points the gain test needs (48 ms of the louder voice)


@dataclass(frozen=True)
class CrosstalkConfig:
    #: a frame is crosstalk when another speaking track is this much louder ...
    margin_db: float = 10.0
    #: ... or, with no further test, this much louder at a frame its own detector does
    #: not call speech: the room's copy of the other voice, which the look-back and the
    #: pads would otherwise put in front of a sound of its own (a cough or a laugh in the
    #: envelope window makes a copy stop looking like one). Speech frames are left to the
    #: tests below: a word's soft onset under a loud voice is still the word.
    certain_db: float = 30.0
    #: ... and the two envelopes correlate at least this much ...
    min_corr: float = 0.5
    #: ... and the quieter one stays at one gain below the louder (standard deviation of
    #: their level difference, dB, where the louder is within ``follow_range_db`` of its
    #: loudest in the window)
    max_spread_db: float = 6.0
    follow_range_db: float = 20.0
    #: ... and the frame's spectrum has the louder one's shape (correlation of their band
    #: levels, at the frame or one either side, at least this)
    min_spectral_corr: float = 0.5
    #: envelope window each side of the frame (frames of 32 ms)
    half_window: int = 8
    #: delay between two microphones' copies of a voice considered (ms)
    max_lag_ms: int = 48
    #: frames quieter than this are never compared (nothing to suppress)
    floor_dbfs: float = -70.0
    #: frames either side of a speaking track's speech that still count as its speech
    hold: int = 3
    #: loudest speaking tracks a frame is compared with (bounds the cost in big meetings)
    sources: int = 2

    @property
    def lags(self) -> int:
        return max(0, self.max_lag_ms // (32 // SUB))


@dataclass
class Features:
    """Per-frame level (dBFS), 8 ms log-level envelope and band levels of a stretch of one
    track."""

    level: np.ndarray  # (frames,)
    envelope: np.ndarray  # (frames * SUB,)
    bands: np.ndarray  # (frames, BANDS): dB in each band of the frame's spectrum


def features(pcm: bytes | np.ndarray) -> Features:
    """Levels of the whole 512-sample frames of 16 kHz s16 ``pcm`` (a remainder is ignored)."""
    if isinstance(pcm, bytes | bytearray | memoryview):
        samples = np.frombuffer(pcm, dtype="<i2")
    else:
        samples = pcm
    x = samples.astype(np.float32) / 32768.0
    n = x.size // FRAME
    sq = x[: n * FRAME] ** 2
    level = 10.0 * np.log10(sq.reshape(n, FRAME).mean(axis=1) + 1e-12)
    envelope = 10.0 * np.log10(sq.reshape(n * SUB, FRAME // SUB).mean(axis=1) + 1e-12)
    power = np.abs(np.fft.rfft(x[: n * FRAME].reshape(n, FRAME) * _WINDOW, axis=1)) ** 2
    summed = np.add.reduceat(power, _EDGES[:-1], axis=1)[:, :BANDS]
    bands = 10.0 * np.log10(summed / np.diff(_EDGES) + 1e-12)
    return Features(level.astype(np.float32), envelope.astype(np.float32), bands.astype(np.float32))


def _same_spectrum(
    bands: np.ndarray, i: int, j: np.ndarray, at: np.ndarray, cfg: CrosstalkConfig
) -> np.ndarray:
    """At each frame of ``at``: whether track ``i``'s band levels there (``bands[t, k]``:
    track ``t``'s at frame ``k``) have the shape of track ``j``'s (``j[n]`` at ``at[n]``) at
    that frame or one either side (a copy can arrive a frame late): their correlation about
    their means is at least ``min_spectral_corr``. A microphone's copy of a voice has the
    voice's spectrum (tilted by the room, which a correlation about the mean forgives);
    another voice at the same moment says another sound (a quiet "f" under a loud "o")."""
    last = bands.shape[1] - 1
    a = _unit(bands[i, at])
    b = _unit(bands[j[:, None], np.clip(at[:, None] + np.arange(-1, 2), 0, last)])
    best = np.einsum("nb,ndb->nd", a, b).max(axis=1)
    result: np.ndarray = best >= cfg.min_spectral_corr
    return result


def _unit(rows: np.ndarray) -> np.ndarray:
    """Each row (last axis) about its mean, to unit length: a dot product of two is their
    correlation."""
    centred = rows - rows.mean(axis=-1, keepdims=True)
    norm = np.sqrt((centred * centred).sum(axis=-1, keepdims=True))
    out: np.ndarray = centred / np.maximum(norm, 1e-9)
    return out


def _follows_at(
    windows: np.ndarray,
    i: int,
    j: np.ndarray,
    centres: np.ndarray,
    lags: int,
    cfg: CrosstalkConfig,
) -> np.ndarray:
    """At each of ``centres``: whether track ``i``'s envelope window there follows track
    ``j``'s (``j[n]`` at ``centres[n]``: all pairs in one call) as a copy of it would, at
    some shift of at most ``lags`` points either way: their normalised correlation is at
    least ``min_corr`` *and*, over the points where ``j`` is within ``follow_range_db`` of
    its loudest, ``i`` stays at one gain below it (the difference varies by at most
    ``max_spread_db``, standard deviation). A microphone's copy of a voice keeps the
    voice's syllables and the room's coupling; another voice that merely starts, pauses or
    stresses at the same moments (two people both saying "The ..." at once) correlates as
    well, but its level against the louder voice swings by 10 dB or more from one syllable
    to the next.

    ``windows[t, k]`` is track ``t``'s window starting at padded point ``k`` (the envelope
    padded by ``half + lags`` points each side), so the window centred on point ``c`` starts
    at ``c + lags``. Computed only where asked: most frames need no comparison."""
    wa = windows[i, centres + lags]  # (n, win)
    wb = windows[j[:, None], centres[:, None] + np.arange(2 * lags + 1)]  # (n, lags, win)
    # the gain test, on the source's loud points (its quiet ones sink into the copy's floor)
    loud = wb >= wb.max(axis=2, keepdims=True) - cfg.follow_range_db
    diff = np.where(loud, wa[:, None, :] - wb, 0.0)
    count = loud.sum(axis=2)
    mean = diff.sum(axis=2) / np.maximum(count, 1)
    spread = np.sqrt(np.maximum((diff * diff).sum(axis=2) / np.maximum(count, 1) - mean**2, 0))
    steady = (count >= _MIN_LOUD) & (spread <= cfg.max_spread_db)
    ca = wa - wa.mean(axis=1, keepdims=True)
    cb = wb - wb.mean(axis=2, keepdims=True)
    num = np.einsum("nw,nlw->nl", ca, cb)
    den = np.sqrt((ca * ca).sum(axis=1)[:, None] * (cb * cb).sum(axis=2))
    corr = num / np.maximum(den, 1e-9)
    result: np.ndarray = ((corr >= cfg.min_corr) & steady).any(axis=1)
    return result


def crosstalk_frames(
    feats: list[Features],
    speech: list[np.ndarray],
    config: CrosstalkConfig | None = None,
    only: int | None = None,
    within: tuple[int, int] | None = None,
) -> list[np.ndarray]:
    """For aligned tracks (same frame 0, same length), which frames of each are crosstalk.

    ``speech[j][t]`` says whether track ``j`` carries speech at frame ``t`` (its own voice
    detector): only a speaking track can be the source of another's crosstalk. With
    ``only``, just that track's frames are decided (the others' masks stay empty); with
    ``within`` (first, end), just those frames (the rest is context for the envelopes).

    Cost stays linear in the number of tracks: at each frame a track is compared only with
    the ``sources`` loudest speaking tracks (a voice leaks loudest from its own talker's
    microphone, so the loudest speaking tracks are where a copy comes from)."""
    cfg = config or CrosstalkConfig()
    tracks = len(feats)
    frames = min((f.level.size for f in feats), default=0)
    out = [np.zeros(frames, dtype=bool) for _ in range(tracks)]
    if tracks < 2 or frames == 0:
        return out
    level = np.stack([f.level[:frames] for f in feats])
    # A copy of a voice may reach another microphone a frame late: compare with the louder
    # of the speaking track's neighbouring frames.
    padded = np.pad(level, ((0, 0), (1, 1)), mode="edge")
    near = np.maximum(np.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    talking = np.stack([np.asarray(s[:frames], dtype=bool) for s in speech])
    # Two tracks' detectors do not switch at the same frame (a copy 20 dB down fades out of
    # one while the other still holds on): a track counts as speaking a little either side.
    held = talking.copy()
    for k in range(1, cfg.hold + 1):
        held[:, k:] |= talking[:, :-k]
        held[:, :-k] |= talking[:, k:]
    # The candidate sources: the loudest speaking tracks at each frame, loudest first.
    loudness = np.where(held, near, -np.inf)
    k = min(cfg.sources + 1, tracks)  # one more, in case the track itself is among them
    top = np.argsort(-loudness, axis=0)[:k]  # (k, frames)
    columns = np.arange(frames)
    bands: np.ndarray | None = None  # built when a frame first needs them (most never do)
    windows: np.ndarray | None = None
    for i in range(tracks) if only is None else (only,):
        audible = level[i] >= cfg.floor_dbfs
        for rank in range(k):
            j_at = top[rank]
            src_level = near[j_at, columns]
            louder = (
                (j_at != i)
                & np.isfinite(loudness[j_at, columns])
                & audible
                & (src_level - level[i] >= cfg.margin_db)
                & ~out[i]
            )
            at = np.flatnonzero(louder)
            if within is not None:
                at = at[(at >= within[0]) & (at < within[1])]
            if not at.size:
                continue
            certain = (src_level[at] - level[i][at] >= cfg.certain_db) & ~talking[i][at]
            out[i][at[certain]] = True
            at = at[~certain]
            if not at.size:
                continue
            if bands is None:
                bands = np.stack([f.bands[:frames] for f in feats])
            at = at[_same_spectrum(bands, i, j_at[at], at, cfg)]
            if not at.size:
                continue
            if windows is None:
                windows = _envelope_windows(feats, frames, cfg)
            centre = at * SUB + SUB // 2
            out[i][at[_follows_at(windows, i, j_at[at], centre, cfg.lags, cfg)]] = True
    return out


def _envelope_windows(feats: list[Features], frames: int, cfg: CrosstalkConfig) -> np.ndarray:
    """Each track's envelope windows, for :func:`_follows_at`."""
    env = np.stack([f.envelope[: frames * SUB] for f in feats]).astype(np.float64)
    env = np.maximum(env, cfg.floor_dbfs - 20.0)  # digital silence must not dominate
    half = cfg.half_window * SUB
    padded_env = np.pad(env, ((0, 0), (half + cfg.lags, half + cfg.lags)), mode="edge")
    windows: np.ndarray = sliding_window_view(padded_env, 2 * half + 1, axis=1)
    return windows


def silence_frames(pcm: bytes, mask: np.ndarray, first_frame: int = 0) -> bytes:
    """``pcm`` with the frames where ``mask`` is true replaced by silence (dropped in memory);
    frame ``k`` of ``mask`` is ``pcm``'s frame ``k - first_frame``."""
    samples = np.frombuffer(pcm, dtype="<i2").copy()
    n = samples.size // FRAME
    for k in np.flatnonzero(mask[first_frame : first_frame + n]):
        samples[k * FRAME : (k + 1) * FRAME] = 0
    return samples.astype("<i2").tobytes()


@dataclass
class _History:
    """What a track pushed, newest last: one level, ``SUB`` envelope points, a row of band
    levels and a speech flag per frame."""

    def __init__(self, first: int = 0) -> None:
        self.first = first  # meeting frame of level[0]
        self.level = np.zeros(0, np.float32)
        self.envelope = np.zeros(0, np.float32)
        self.bands = np.zeros((0, BANDS), np.float32)
        self.speech = np.zeros(0, bool)
        self.rest = b""  # samples of a frame not yet complete

    @property
    def end(self) -> int:
        return self.first + self.level.size

    def add(self, f: Features, speech: np.ndarray, keep: int) -> None:
        """Append ``f`` and its speech flags; keep only the last ``keep`` frames."""
        extra = max(0, self.level.size + f.level.size - keep)
        self.level = np.concatenate([self.level, f.level])[extra:]
        self.envelope = np.concatenate([self.envelope, f.envelope])[extra * SUB :]
        self.bands = np.concatenate([self.bands, f.bands])[extra:]
        self.speech = np.concatenate([self.speech, speech])[extra:]
        self.first += extra

    def span(self, lo: int, hi: int) -> tuple[int, int]:
        """Indices of meeting frames ``lo .. hi - 1`` in this history (clipped)."""
        return max(lo, self.first) - self.first, max(0, min(hi, self.end) - self.first)


class CrosstalkArbiter:
    """One meeting's tracks in meeting time (frame ``k`` = ``k * 32`` ms of meeting time).

    Each track :meth:`push` es its frames' features and speech decisions as it captures; a
    track asks :meth:`crosstalk` for a stretch once :meth:`reached` says the other tracks
    have got that far (or it will not wait longer), and gets which frames to drop. History
    beyond ``history_frames`` is forgotten: nothing but levels is held, never audio."""

    def __init__(self, config: CrosstalkConfig | None = None, history_frames: int = 1024):
        self.config = config or CrosstalkConfig()
        self.history = history_frames
        self._tracks: dict[str, _History] = {}
        #: tracks that left, kept while another track may still decide frames they overlap
        #: (a track that ended is still the source of what the others heard of it)
        self._ended: dict[str, _History] = {}

    def push(
        self,
        track: str,
        pcm: bytes,
        speech: Iterable[bool],
        first_frame: int | None = None,
    ) -> None:
        """Add ``pcm`` (16 kHz s16le) that follows what ``track`` pushed before, with the
        track's speech decision for each frame it completes (a voice detector fed the same
        stream completes the same frames); a remainder waits for the next push.
        ``first_frame``: the meeting frame the stream starts at, on a track's first push
        or after a gap (a resumed track); a push without one continues the stream."""
        h = self._tracks.get(track)
        if h is None or (first_frame is not None and first_frame != h.end):
            h = self._tracks[track] = _History(first_frame or 0)
            self._ended.pop(track, None)
        data = h.rest + pcm
        whole = len(data) // (FRAME * 2) * FRAME * 2
        h.rest = data[whole:]
        f = features(data[:whole])
        flags = np.zeros(f.level.size, dtype=bool)
        given = np.fromiter(speech, dtype=bool)[: f.level.size]
        flags[: given.size] = given
        h.add(f, flags, self.history)
        if self._ended:
            self._prune()

    def remove(self, track: str) -> None:
        h = self._tracks.pop(track, None)
        if h is not None and self._tracks:
            self._ended[track] = h
        self._prune()

    def _prune(self) -> None:
        """Forget the tracks that left once no track holds frames they overlap."""
        oldest = min((h.first for h in self._tracks.values()), default=1 << 62)
        for name in [n for n, e in self._ended.items() if e.end <= oldest]:
            del self._ended[name]

    def shift(self, track: str, frames: int) -> None:
        """Move what ``track`` pushed by ``frames`` in meeting time (negative: earlier), when
        a better estimate of where its stream started comes in (see :meth:`LiveTrack.rebase`)."""
        h = self._tracks.get(track)
        if h is not None:
            h.first += frames

    def reached(self, track: str) -> int:
        """The meeting frame up to which every other track has pushed (the smallest end)."""
        ends = [h.end for name, h in self._tracks.items() if name != track]
        return min(ends) if ends else 1 << 62

    def crosstalk(self, track: str, first_frame: int, count: int) -> np.ndarray:
        """Which of frames ``first_frame .. first_frame + count - 1`` of ``track`` are
        crosstalk, from what the other tracks have pushed so far (frames they have not
        reached, or that are forgotten, are kept)."""
        out = np.zeros(count, dtype=bool)
        mine = self._tracks.get(track)
        if mine is None or count <= 0:
            return out
        cfg = self.config
        margin = cfg.half_window + 1 + cfg.lags // SUB + 1  # context for the envelope window
        lo = max(first_frame - margin, mine.first)
        hi = min(first_frame + count + margin, mine.end)
        if hi <= lo:
            return out
        a, b = max(first_frame, lo), min(first_frame + count, hi)
        i, j = mine.span(a, b)
        own = mine.level[i:j]
        if not (own >= cfg.floor_dbfs).any():
            return out  # nothing audible to decide (or the stretch is forgotten, or not pushed)
        quietest = float(own.min())

        def loudest(h: _History) -> float:
            i, j = h.span(lo, hi)
            return float(h.level[i:j].max()) if h.speech[i:j].any() else -np.inf

        # Only a track speaking in the stretch and ``margin_db`` louder than this one's
        # quietest frame can be a source; the loudest few of those stand in for each
        # frame's ``sources`` loudest (crosstalk_frames), so a big meeting costs a few
        # tracks' arrays per call, not all of them.
        others = {**self._ended, **self._tracks}
        loud = [(loudest(h), n) for n, h in others.items() if n != track]
        loud = [(v, n) for v, n in loud if v - quietest >= cfg.margin_db]
        if not loud:
            return out
        names = [track, *(n for _, n in sorted(loud, reverse=True)[: cfg.sources + 1])]
        feats: list[Features] = []
        speech: list[np.ndarray] = []
        for name in names:
            h = others.get(name, mine)
            level = np.full(hi - lo, -120.0, dtype=np.float32)
            env = np.full((hi - lo) * SUB, -120.0, dtype=np.float32)
            bands = np.full((hi - lo, BANDS), -120.0, dtype=np.float32)
            talk = np.zeros(hi - lo, dtype=bool)
            i, j = h.span(lo, hi)
            if j > i:
                at = h.first + i - lo
                level[at : at + j - i] = h.level[i:j]
                bands[at : at + j - i] = h.bands[i:j]
                env[at * SUB : (at + j - i) * SUB] = h.envelope[i * SUB : j * SUB]
                talk[at : at + j - i] = h.speech[i:j]
            feats.append(Features(level, env, bands))
            speech.append(talk)
        mask = crosstalk_frames(feats, speech, cfg, only=0, within=(a - lo, b - lo))[0]
        out[a - first_frame : b - first_frame] = mask[a - lo : b - lo]
        return out


class SpeechDecider(Protocol):
    """A track's voice detector (:class:`pipeline.audio.vad.SileroSpeech`): one decision
    per 512-sample frame the PCM completes, remainder kept for the next call."""

    def decide(self, pcm_16k_s16: bytes) -> list[bool]: ...


class LiveTrack:
    """One live track's speech decisions in its meeting: its voice detector's decision per
    32 ms frame, less the frames the meeting's arbiter finds to be crosstalk, released once
    the other tracks have got far enough to compare (``lookahead`` frames past, the envelope
    window) or ``max_wait`` frames have passed (a stalled track holds no one up), at least
    ``min_release`` frames at a time.

    :meth:`feed` takes resampled PCM and returns ``(pcm, speech)``: whole frames whose
    crosstalk frames are already silence, and one decision per frame, ready for the
    segmenter. Without an arbiter (a meeting's only process-local track, a file) it passes
    the detector's decisions straight on. Frame ``k`` of the track is meeting frame
    ``first_frame + k``."""

    def __init__(
        self,
        detector: SpeechDecider,
        arbiter: CrosstalkArbiter | None,
        name: str,
        first_frame: int,
        max_wait: int = 24,
        min_release: int = 9,
    ) -> None:
        self.detector = detector
        self.arbiter = arbiter
        self.name = name
        self.first_frame = first_frame
        self.max_wait = max_wait
        #: frames decided together (288 ms): each decision compares the stretch with its
        #: context, so deciding a 100 ms batch at a time cost a third more CPU per track
        self.min_release = min_release
        self._rest = b""  # samples of a frame not complete yet
        self._pcm = bytearray()  # whole frames pushed, not released
        self._speech: list[bool] = []
        self._released = 0  # frames released (track-local)
        self._pushed = 0

    @property
    def lookahead(self) -> int:
        return self.arbiter.config.half_window + 1 if self.arbiter is not None else 0

    def feed(self, pcm: bytes) -> tuple[bytes, list[bool]]:
        flags = list(self.detector.decide(pcm))
        data = self._rest + pcm
        whole = len(flags) * FRAME * 2
        self._rest = data[whole:]
        if self.arbiter is None:
            self._released += len(flags)
            return data[:whole], flags
        self.arbiter.push(
            self.name, pcm, flags, first_frame=self.first_frame if not self._pushed else None
        )
        self._pcm += data[:whole]
        self._speech += flags
        self._pushed += len(flags)
        reached = self.arbiter.reached(self.name) - self.first_frame
        upto = max(min(reached, self._pushed) - self.lookahead, self._pushed - self.max_wait)
        if upto - self._released < self.min_release:
            return b"", []
        return self._release(upto)

    def flush(self) -> tuple[bytes, list[bool]]:
        """Everything held (the stream ended); the track leaves the arbiter."""
        out = self._release(self._pushed)
        self.close()
        return out

    def close(self) -> None:
        if self.arbiter is not None:
            self.arbiter.remove(self.name)

    def rebase(self, first_frame: int) -> None:
        """The track's frame 0 is meeting frame ``first_frame`` after all: capture learns
        where a stream started from its frames' arrival, and the first frames of a stream
        often come late (a sender catching up, a jitter buffer filling), so the estimate
        improves after the start. What is pushed moves with it; what is released stays."""
        delta = first_frame - self.first_frame
        if not delta:
            return
        self.first_frame = first_frame
        if self.arbiter is not None and self._pushed:
            self.arbiter.shift(self.name, delta)

    def _release(self, upto: int) -> tuple[bytes, list[bool]]:
        count = upto - self._released
        if count <= 0 or self.arbiter is None:
            return b"", []
        mask = self.arbiter.crosstalk(self.name, self.first_frame + self._released, count)
        pcm = silence_frames(bytes(self._pcm[: count * FRAME * 2]), mask)
        speech = [s and not m for s, m in zip(self._speech[:count], mask.tolist(), strict=True)]
        del self._pcm[: count * FRAME * 2], self._speech[:count]
        self._released = upto
        return pcm, speech
