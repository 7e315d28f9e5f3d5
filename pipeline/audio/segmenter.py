"""Voice-activity segmentation of one participant's 16 kHz mono PCM into utterances.

Streaming: feed PCM as it arrives (the bot) or all at once (a file); utterances come out as
soon as a pause ends them. Whisper then sees whole utterances, which it transcribes best, and
pure silence never reaches a worker.

Which frames are speech: in capture (live tracks and files), the decisions of the Silero
voice detector (:mod:`pipeline.audio.vad`, 32 ms frames), less the frames the meeting's
crosstalk arbiter finds to be another participant's voice, are passed to :meth:`feed`.
Without them (``SEALSCRIBE_VAD=energy``, or a caller that passes none) a frame is speech
when its energy is ``threshold_db`` above an adaptive noise floor: no model and a few
microseconds per frame, but steady noise or music above the floor passes as speech and
another person's voice leaking into a microphone does too. The frame level is computed in
either case: it chooses where a long utterance without a pause is cut (its quietest frame)
and where a voice detector's late onset really began (``lookback_ms``).

Knobs (all in :class:`SegmenterConfig`): with the energy rule, a frame is speech when its
level is ``threshold_db`` above the noise floor and above ``min_level_dbfs``; an utterance
ends after ``end_silence_ms`` of non-speech, keeps ``pad_ms`` of context on both sides
(before its start ``pre_pad_ms`` where set), and is dropped when it has less than
``min_speech_ms`` of speech.

An utterance longer than ``max_utterance_ms`` is cut in the longest pause of its second half
(frames not speech), or without one at the quietest frame of its last third, into pieces
that overlap by ``overlap_ms`` on each side of the cut: a word spoken across the cut is then
whole in at least one piece. Each piece says which words are its own
(``keep_from_ms``/``keep_to_ms``, the cut position), so the keep windows of an utterance's
pieces tile it with no gap and no overlap, and the worker drops the rest.

With ``interim_ms`` set (live captions), every ``interim_ms`` of new audio of an utterance in
progress yields an interim utterance, at a speech frame (never in a pause): the audio of the
utterance (or of its current piece) so far, numbered 1, 2, ... and sharing the start, hence
the position, of its final.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Segmenter", "SegmenterConfig", "Utterance", "pack"]

_INITIAL_FLOOR_DBFS = -70.0


@dataclass(frozen=True)
class SegmenterConfig:
    sample_rate: int = 16000
    frame_ms: int = 30
    threshold_db: float = 12.0
    min_level_dbfs: float = -80.0
    end_silence_ms: int = 700
    max_utterance_ms: int = 25000
    pad_ms: int = 240
    min_speech_ms: int = 150
    #: audio each piece of a cut utterance extends past its cut (and the next starts before)
    overlap_ms: int = 1000
    #: new audio between interim utterances of one in progress (0: none, as for a file)
    interim_ms: int = 0
    #: with a voice detector's decisions: how far before the first frame it calls speech
    #: an utterance may start, where the level shows the voice began (0: no look-back)
    lookback_ms: int = 0
    #: a quieter stretch of at most this long inside the look-back does not stop it
    lookback_gap_ms: int = 160
    #: a long utterance is cut in a pause at least this long, if it has one
    min_pause_ms: int = 90
    #: context kept before an utterance's first frame (None: ``pad_ms``, as after its last)
    pre_pad_ms: int | None = None


@dataclass(frozen=True)
class Utterance:
    """An utterance (or a piece of a cut one), positions in ms from the stream's start.

    ``interim`` is 0 for a final utterance and the interim number (1, 2, ...) for the audio
    so far of one in progress. ``keep_from_ms``/``keep_to_ms`` bound the words that are this
    piece's own (None: no bound; set only on the pieces of a cut utterance)."""

    start_ms: int
    pcm: bytes
    interim: int = 0
    keep_from_ms: int | None = None
    keep_to_ms: int | None = None


class Segmenter:
    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self.cfg = config or SegmenterConfig()
        self._frame = self.cfg.sample_rate * self.cfg.frame_ms // 1000  # samples
        self._overlap = -(-self.cfg.overlap_ms // self.cfg.frame_ms)  # frames, rounded up
        self._buf = np.zeros(0, dtype=np.int16)  # samples not yet framed
        # The current utterance (or piece) with its pre-roll: _frames[i] is frame
        # _first_frame + i of the stream, so a piece's start is _first_frame * frame_ms.
        self._frames: list[np.ndarray] = []
        self._levels: list[float] = []
        self._active: list[bool] = []  # frame above the energy rule's threshold
        self._voiced: list[bool] = []  # frame decided to be speech
        self._first_frame = 0  # index of _frames[0] in the whole stream
        self._n = 0  # frames seen
        self._in_speech = False
        self._speech = 0  # speech frames in the current utterance
        self._silence = 0  # trailing non-speech frames
        self._floor: float | None = None  # noise floor (dBFS), from the first frame on
        self._keep_from: int | None = None  # the current piece's keep_from_ms (after a cut)
        self._fresh = 0  # frames since the utterance (piece) began or its last interim
        self._interims = 0  # interims yielded of the current piece

    def feed(self, pcm: bytes, speech: Sequence[bool] | None = None) -> Iterator[Utterance]:
        """Add PCM (s16le); yields every utterance this completes (and interims).

        ``speech``: a voice detector's decision for each frame ``pcm`` completes (Silero,
        :mod:`pipeline.audio.vad`, 32 ms frames), used instead of the energy rule; the
        detector keeps its own remainder, so the frames line up only when the segmenter's
        frame is the detector's (``frame_ms`` 32) and ``pcm`` holds whole frames."""
        samples = np.frombuffer(pcm, dtype="<i2")
        self._buf = np.concatenate([self._buf, samples]) if self._buf.size else samples
        whole = self._buf.size // self._frame * self._frame
        frames, self._buf = self._buf[:whole], self._buf[whole:].copy()
        rows = frames.reshape(-1, self._frame)
        if speech is None:
            for frame in rows:
                yield from self._step(frame)
            return
        if len(speech) != len(rows):
            raise ValueError(
                f"{len(speech)} speech decisions for {len(rows)} frames of {self.cfg.frame_ms} ms"
            )
        for frame, decided in zip(rows, speech, strict=True):
            yield from self._step(frame, bool(decided))

    def flush(self) -> Iterator[Utterance]:
        """End of stream: the utterance in progress, if it holds speech (no interim)."""
        if self._buf.size:
            pad = np.zeros(self._frame - self._buf.size, dtype=np.int16)
            for utt in self._step(np.concatenate([self._buf, pad])):
                if not utt.interim:
                    yield utt
            self._buf = np.zeros(0, dtype=np.int16)
        if self._in_speech:
            yield from self._end(len(self._frames))

    def _step(self, frame: np.ndarray, decided: bool | None = None) -> Iterator[Utterance]:
        cfg = self.cfg
        rms = float(np.sqrt(np.mean(frame.astype(np.float32) ** 2))) + 1e-9
        level = float(20 * np.log10(rms / 32768.0))
        if self._floor is None:
            # Start from a quiet room, not from the first frame: a stream may open mid-word.
            self._floor = min(level, _INITIAL_FLOOR_DBFS)
        active = level > max(self._floor + cfg.threshold_db, cfg.min_level_dbfs)
        speech = active if decided is None else decided
        # The floor follows quiet frames quickly and loud ones slowly.
        rate = 0.2 if level < self._floor else 0.002
        self._floor += rate * (level - self._floor)
        self._n += 1
        self._frames.append(frame)
        self._levels.append(level)
        self._active.append(active)
        self._voiced.append(speech)
        pad = cfg.pad_ms // cfg.frame_ms
        if not self._in_speech:
            if speech:
                self._in_speech, self._speech, self._silence = True, 1, 0
                self._fresh, self._interims = 1, 0
                pre = (cfg.pad_ms if cfg.pre_pad_ms is None else cfg.pre_pad_ms) // cfg.frame_ms
                self._forget(max(0, self._onset() - pre))
                yield from self._interim()
            else:
                # keep the pre-roll and what a look-back may reach
                self._forget(max(0, len(self._frames) - pad - cfg.lookback_ms // cfg.frame_ms))
            return
        self._fresh += 1
        if speech:
            self._speech += 1
            self._silence = 0
        else:
            self._silence += 1
        if self._silence * cfg.frame_ms >= cfg.end_silence_ms:
            keep = len(self._frames) - self._silence + pad
            yield from self._end(min(keep, len(self._frames)))
        elif len(self._frames) * cfg.frame_ms >= cfg.max_utterance_ms:
            yield from self._cut()
        elif speech:
            # Not in a pause: an interim there would show nothing new, and one queued in
            # the pause that ends the utterance would hold the worker when the final comes.
            yield from self._interim()

    def _onset(self) -> int:
        """Where the utterance that starts at the last frame held began: that frame, or
        with ``lookback_ms`` the first of the loud frames (short quieter gaps allowed) that
        lead up to it. A voice detector fed a fresh state, or speech that starts softly,
        can call speech up to a second or more after the first word began (Silero on the
        fleurs-en clips through Opus: 0.5-1.5 s); the level shows where it did. Only a
        detector's decision starts an utterance: the look-back never makes speech of noise
        alone, it only moves the start of what the detector found. Crosstalk frames reach
        the segmenter as silence, so the look-back stops at another person's voice."""
        cfg = self.cfg
        last = len(self._frames) - 1
        if not cfg.lookback_ms:
            return last
        gap = cfg.lookback_gap_ms // cfg.frame_ms
        first = max(0, last - cfg.lookback_ms // cfg.frame_ms)
        onset, quiet = last, 0
        for i in range(last - 1, first - 1, -1):
            if self._active[i]:
                onset, quiet = i, 0
            else:
                quiet += 1
                if quiet > gap:
                    break
        return onset

    def _interim(self) -> Iterator[Utterance]:
        """The utterance so far, once ``interim_ms`` of new audio came since the last."""
        cfg = self.cfg
        if not cfg.interim_ms or self._fresh * cfg.frame_ms < cfg.interim_ms:
            return
        if self._speech * cfg.frame_ms < cfg.min_speech_ms:
            return  # too little speech to caption yet: wait for more, then caption at once
        self._fresh = 0
        self._interims += 1
        yield Utterance(
            self._first_frame * cfg.frame_ms,
            np.concatenate(self._frames).astype("<i2").tobytes(),
            interim=self._interims,
            keep_from_ms=self._keep_from,
        )

    def _piece(self, count: int, keep_to: int | None = None) -> Iterator[Utterance]:
        """The first ``count`` frames as a final utterance, if it holds enough speech."""
        cfg = self.cfg
        if self._speech * cfg.frame_ms >= cfg.min_speech_ms and count > 0:
            yield Utterance(
                self._first_frame * cfg.frame_ms,
                np.concatenate(self._frames[:count]).astype("<i2").tobytes(),
                keep_from_ms=self._keep_from,
                keep_to_ms=keep_to,
            )

    def _forget(self, count: int) -> None:
        """Drop the first ``count`` frames: the next one held becomes ``_frames[0]``."""
        del self._frames[:count], self._levels[:count], self._active[:count]
        del self._voiced[:count]
        self._first_frame += count

    def _end(self, count: int) -> Iterator[Utterance]:
        """A pause ended the utterance after its first ``count`` frames."""
        yield from self._piece(count)
        self._forget(count)
        self._in_speech = False
        self._speech = self._silence = self._fresh = self._interims = 0
        self._keep_from = None
        # What follows the kept padding is silence: keep at most a pre-roll of it.
        pad = self.cfg.pad_ms // self.cfg.frame_ms
        self._forget(max(0, len(self._frames) - pad))

    def _cut(self) -> Iterator[Utterance]:
        """The utterance reached its maximum: emit a piece up to a cut, and continue.

        The cut is in the middle of the longest pause (frames not speech) in the second
        half, where no word can be (not earlier: each cut must move the utterance on);
        without one (a speaker who never stops for ``min_pause_ms``), after the quietest
        frame of the last third, so words are rarely split. It leaves ``_overlap`` frames
        after it, which the piece keeps (a word across the cut is whole in it), and the next
        piece starts ``_overlap`` frames before it (so the word is whole there too). The
        keep windows meet exactly at the cut."""
        cfg = self.cfg
        n = len(self._frames)
        # (an overlap of at most a third leaves the next piece shorter than this one)
        overlap = min(self._overlap, n // 3)
        hi = n - overlap  # the cut may be no later than this
        start, length = _longest_pause(self._voiced, n // 2, hi)
        if length * cfg.frame_ms >= cfg.min_pause_ms:
            cut = start + length // 2
        else:
            lo = max(0, hi - max(1, n // 3))
            cut = lo + int(np.argmin(self._levels[lo:hi])) + 1
        at_ms = (self._first_frame + cut) * cfg.frame_ms
        yield from self._piece(cut + overlap, keep_to=at_ms)
        self._forget(cut - overlap)
        self._keep_from = at_ms
        # The next piece counts as speech (the utterance goes on past the cut), but a pause
        # already under way at its end still counts towards ending it.
        self._speech = len(self._frames)
        self._silence = min(self._silence, len(self._frames))
        self._fresh = self._interims = 0


def _longest_pause(voiced: Sequence[bool], lo: int, hi: int) -> tuple[int, int]:
    """The first index and length of the longest run of non-speech frames in ``lo..hi-1``."""
    best, best_len, run = lo, 0, 0
    for i in range(lo, hi):
        run = 0 if voiced[i] else run + 1
        if run > best_len:
            best, best_len = i - run + 1, run
    return best, best_len


def pack(
    utterances: list[Utterance],
    pcm: bytes,
    sample_rate: int = 16000,
    max_ms: int = 28000,
    max_gap_ms: int = 3000,
) -> list[Utterance]:
    """Join neighbouring utterances of a recording into windows of at most ``max_ms``.

    Whisper encodes every input as a 30 s window, so ten 3 s utterances cost ten times what
    one 30 s window does. When latency does not matter (a recorded file), neighbours are
    joined, together with the short pauses between them (at most ``max_gap_ms``), from the
    original ``pcm``; longer silences still separate windows and are never transcribed.
    Overlapping pieces of a cut utterance joined in one window become one stretch of audio;
    a window keeps the keep bounds of its first and last piece (interims are ignored)."""
    bytes_per_ms = sample_rate * 2 // 1000
    out: list[Utterance] = []
    start = end = -1
    keep_from: int | None = None
    keep_to: int | None = None

    def window() -> Utterance:
        return Utterance(
            start,
            pcm[start * bytes_per_ms : end * bytes_per_ms],
            keep_from_ms=keep_from,
            keep_to_ms=keep_to,
        )

    for utt in utterances:
        if utt.interim:
            continue
        u_start, u_end = utt.start_ms, utt.start_ms + len(utt.pcm) // bytes_per_ms
        if start >= 0 and u_start - end <= max_gap_ms and u_end - start <= max_ms:
            end = max(end, u_end)
            keep_to = utt.keep_to_ms
            continue
        if start >= 0:
            out.append(window())
        start, end = u_start, u_end
        keep_from, keep_to = utt.keep_from_ms, utt.keep_to_ms
    if start >= 0:
        out.append(window())
    return out
