"""Voice-activity segmentation of one participant's 16 kHz mono PCM into utterances.

Streaming: feed PCM as it arrives (the bot) or all at once (a file); utterances come out as
soon as a pause ends them. Speech is found by frame energy against an adaptive noise floor,
so it needs no model and runs in a few microseconds per 30 ms frame. Whisper then sees whole
utterances, which it transcribes best, and pure silence never reaches a worker.

Knobs (all in :class:`SegmenterConfig`): a frame is speech when its level is
``threshold_db`` above the noise floor and above ``min_level_dbfs``; an utterance ends after
``end_silence_ms`` of non-speech, is cut at ``max_utterance_ms`` (at the quietest frame of
its last seconds), keeps ``pad_ms`` of context on both sides, and is dropped when it has less
than ``min_speech_ms`` of speech.
"""

from __future__ import annotations

from collections.abc import Iterator
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


@dataclass(frozen=True)
class Utterance:
    start_ms: int
    pcm: bytes


class Segmenter:
    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self.cfg = config or SegmenterConfig()
        self._frame = self.cfg.sample_rate * self.cfg.frame_ms // 1000  # samples
        self._buf = np.zeros(0, dtype=np.int16)  # samples not yet framed
        self._frames: list[np.ndarray] = []  # current utterance (and pre-roll) frames
        self._levels: list[float] = []
        self._first_frame = 0  # index of _frames[0] in the whole stream
        self._n = 0  # frames seen
        self._in_speech = False
        self._speech = 0  # speech frames in the current utterance
        self._silence = 0  # trailing non-speech frames
        self._floor: float | None = None  # noise floor (dBFS), from the first frame on

    def feed(self, pcm: bytes) -> Iterator[Utterance]:
        """Add PCM (s16le); yields every utterance this completes."""
        samples = np.frombuffer(pcm, dtype="<i2")
        self._buf = np.concatenate([self._buf, samples]) if self._buf.size else samples
        whole = self._buf.size // self._frame * self._frame
        frames, self._buf = self._buf[:whole], self._buf[whole:].copy()
        for frame in frames.reshape(-1, self._frame):
            yield from self._step(frame)

    def flush(self) -> Iterator[Utterance]:
        """End of stream: the utterance in progress, if it holds speech."""
        if self._buf.size:
            pad = np.zeros(self._frame - self._buf.size, dtype=np.int16)
            yield from self._step(np.concatenate([self._buf, pad]))
            self._buf = np.zeros(0, dtype=np.int16)
        if self._in_speech:
            yield from self._emit(len(self._frames))

    def _step(self, frame: np.ndarray) -> Iterator[Utterance]:
        cfg = self.cfg
        rms = float(np.sqrt(np.mean(frame.astype(np.float32) ** 2))) + 1e-9
        level = float(20 * np.log10(rms / 32768.0))
        if self._floor is None:
            # Start from a quiet room, not from the first frame: a stream may open mid-word.
            self._floor = min(level, _INITIAL_FLOOR_DBFS)
        speech = level > max(self._floor + cfg.threshold_db, cfg.min_level_dbfs)
        # The floor follows quiet frames quickly and loud ones slowly.
        rate = 0.2 if level < self._floor else 0.002
        self._floor += rate * (level - self._floor)
        self._n += 1
        self._frames.append(frame)
        self._levels.append(level)
        pad = cfg.pad_ms // cfg.frame_ms
        if not self._in_speech:
            if speech:
                self._in_speech, self._speech, self._silence = True, 1, 0
            else:
                drop = len(self._frames) - pad
                if drop > 0:  # keep only the pre-roll
                    del self._frames[:drop], self._levels[:drop]
                    self._first_frame += drop
            return
        if speech:
            self._speech += 1
            self._silence = 0
        else:
            self._silence += 1
        if self._silence * cfg.frame_ms >= cfg.end_silence_ms:
            keep = len(self._frames) - self._silence + pad
            yield from self._emit(min(keep, len(self._frames)))
        elif len(self._frames) * cfg.frame_ms >= cfg.max_utterance_ms:
            # Cut at the quietest frame of the last third, so words are rarely split.
            third = len(self._levels) // 3
            tail = self._levels[-third:]
            cut = len(self._levels) - third + int(np.argmin(tail)) + 1
            yield from self._emit(cut, continuing=True)

    def _emit(self, count: int, continuing: bool = False) -> Iterator[Utterance]:
        cfg = self.cfg
        frames, rest = self._frames[:count], self._frames[count:]
        start_ms = self._first_frame * cfg.frame_ms
        if self._speech * cfg.frame_ms >= cfg.min_speech_ms and frames:
            yield Utterance(start_ms, np.concatenate(frames).astype("<i2").tobytes())
        self._first_frame += count
        self._frames, self._levels = rest, self._levels[count:]
        self._in_speech = continuing
        self._speech = len(rest) if continuing else 0
        self._silence = 0
        if not continuing:
            # What follows the kept padding is silence: keep at most a pre-roll of it.
            pad = cfg.pad_ms // cfg.frame_ms
            drop = max(0, len(self._frames) - pad)
            del self._frames[:drop], self._levels[:drop]
            self._first_frame += drop


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
    original ``pcm``; longer silences still separate windows and are never transcribed."""
    bytes_per_ms = sample_rate * 2 // 1000
    out: list[Utterance] = []
    start = end = -1
    for utt in utterances:
        u_start, u_end = utt.start_ms, utt.start_ms + len(utt.pcm) // bytes_per_ms
        if start >= 0 and u_start - end <= max_gap_ms and u_end - start <= max_ms:
            end = max(end, u_end)
            continue
        if start >= 0:
            out.append(Utterance(start, pcm[start * bytes_per_ms : end * bytes_per_ms]))
        start, end = u_start, u_end
    if start >= 0:
        out.append(Utterance(start, pcm[start * bytes_per_ms : end * bytes_per_ms]))
    return out
