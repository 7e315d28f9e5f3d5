"""Packing short segments of one speaker into one Whisper window, and splitting the words of
that window back to each segment. Pure functions: no model, no store, no content kept.

Whisper encodes every input as a 30 s window, so a 3 s live utterance costs what 30 s of
audio does. When several segments of one participant of one meeting wait together, a worker
joins them into one window of at most :data:`WINDOW_MS` (like a recorded file's utterances,
``pipeline.audio.segmenter.pack``), with :data:`GAP_MS` of silence between them so that
words of neighbours do not merge, and gives each word back to the segment its middle lies
in. Segments of different participants, meetings or tenants never share a window (the
``key`` of an :class:`Item` says who may): they may only be separate clips of one batch.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "GAP_MS",
    "SAMPLE_RATE",
    "WINDOW_MS",
    "Item",
    "choose",
    "estimate_ms",
    "plan",
    "splice",
    "split_words",
]

#: a packed window's length at most, gaps included (Whisper's is 30 s: room for the gaps'
#: rounding and for a segment a little longer than estimated)
WINDOW_MS = 28000
#: silence between two packed segments
GAP_MS = 300
SAMPLE_RATE = 16000
#: sealed audio bytes per millisecond of 16 kHz 16-bit mono (the seal's overhead is a few
#: dozen bytes: a few milliseconds too many in an estimate)
_BYTES_PER_MS = SAMPLE_RATE * 2 // 1000
#: a word counts as at most this long when its middle is placed (see split_words)
_LONGEST_WORD_S = 0.6


@dataclass(frozen=True)
class Item:
    """A segment as the planner sees it: who may share a window with it (``key``; None:
    nobody), its place in its speaker's stream (``order``) and its length."""

    key: Hashable | None
    duration_ms: int
    order: int = 0


def estimate_ms(sealed_bytes: int) -> int:
    """A sealed audio segment's duration, from its size, before it is opened."""
    return max(0, sealed_bytes) // _BYTES_PER_MS


@dataclass
class _Windows:
    """Windows being filled: for each key, the milliseconds used in each of its windows."""

    max_ms: int
    gap_ms: int
    used: dict[Hashable, list[int]] = field(default_factory=dict)
    count: int = 0

    def fits(self, item: Item) -> int | None:
        """The index of the key's last window if the item fits in it, or None. Only the last:
        a window holds consecutive segments of its speaker, as they were spoken (Whisper
        decodes a window as one stretch of speech; one out of order derails it)."""
        if item.key is None or not self.used.get(item.key):
            return None
        used = self.used[item.key]
        if used[-1] + self.gap_ms + item.duration_ms <= self.max_ms:
            return len(used) - 1
        return None

    def add(self, item: Item) -> tuple[Hashable, int]:
        """Put the item in its key's last window if it fits, else in a new window."""
        k = self.fits(item)
        key: Hashable = item.key if item.key is not None else ("alone", self.count)
        windows = self.used.setdefault(key, [])
        if k is None:
            windows.append(item.duration_ms)
            self.count += 1
            return key, len(windows) - 1
        windows[k] += self.gap_ms + item.duration_ms
        return key, k


def plan(items: Sequence[Item], max_ms: int = WINDOW_MS, gap_ms: int = GAP_MS) -> list[list[int]]:
    """The indices of ``items`` grouped into windows.

    Only items of one key share a window, in stream order (``order``), the window at most
    ``max_ms`` long with ``gap_ms`` between neighbours; an item longer than that, or without
    a key, is a window of its own. Each window is a run of consecutive items of its key.
    Windows come in the order of their first item in ``items``."""
    windows = _Windows(max_ms, gap_ms)
    placed: dict[tuple[Hashable, int], list[int]] = {}
    first: dict[tuple[Hashable, int], int] = {}
    by_stream = sorted(range(len(items)), key=lambda i: (items[i].order, i))
    for i in by_stream:
        slot = windows.add(items[i])
        placed.setdefault(slot, []).append(i)
    for slot, members in placed.items():
        first[slot] = min(members)
    return [placed[slot] for slot in sorted(placed, key=first.__getitem__)]


def choose(
    taken: Sequence[Item],
    candidates: Sequence[Item],
    windows: int,
    max_ms: int = WINDOW_MS,
    gap_ms: int = GAP_MS,
) -> list[int]:
    """Which ``candidates`` (oldest first) to take besides ``taken`` so that all of them
    fill at most ``windows`` windows.

    A candidate that fits a window already opened for its key comes first (it costs almost
    nothing: the window is encoded anyway), then the oldest candidate that needs a new
    window while there is room for one. So under a backlog the oldest waiting segment is
    always taken first, and its speaker's later ones fill its window. ``taken`` is placed
    whatever the count (a task's own segment). Returns candidate indices in choosing order.
    """
    state = _Windows(max_ms, gap_ms)
    for item in taken:
        state.add(item)
    left = list(range(len(candidates)))
    chosen: list[int] = []
    while left:
        pick = next((i for i in left if state.fits(candidates[i]) is not None), None)
        if pick is None and state.count < windows:
            pick = left[0]
        if pick is None:
            break
        state.add(candidates[pick])
        chosen.append(pick)
        left.remove(pick)
    return chosen


def splice(
    parts: Sequence[np.ndarray], gap_ms: int = GAP_MS, rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Samples of a window (``parts`` joined with ``gap_ms`` of silence between them) and
    each part's (start, end) in seconds from the window's start."""
    gap = np.zeros(gap_ms * rate // 1000, dtype=np.float32)
    pieces: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    at = 0
    for k, part in enumerate(parts):
        if k:
            pieces.append(gap)
            at += len(gap)
        spans.append((at / rate, (at + len(part)) / rate))
        pieces.append(part.astype(np.float32, copy=False))
        at += len(part)
    if not pieces:
        return np.zeros(0, dtype=np.float32), []
    return np.concatenate(pieces), spans


def split_words(words: Sequence[Any], spans: Sequence[tuple[float, float]]) -> list[list[Any]]:
    """Each word (anything with ``start`` and ``end`` in seconds) given to the span its
    middle lies in; a word whose middle falls in a gap (Whisper put it across a boundary)
    goes to the nearest span. Word order is kept.

    The middle is taken of at most :data:`_LONGEST_WORD_S` from the word's start: Whisper's
    alignment stretches the last word before a pause over the silence after it (its end is
    where the next word starts), and in a packed window that silence is the gap and the
    next segment; the start is where the word really is."""
    out: list[list[Any]] = [[] for _ in spans]
    if not spans:
        return out
    for w in words:
        start = float(w.start)
        mid = start + min(max(0.0, float(w.end) - start), _LONGEST_WORD_S) / 2

        def distance(k: int, mid: float = mid) -> float:
            start, end = spans[k]
            return 0.0 if start <= mid < end else min(abs(mid - start), abs(mid - end))

        out[min(range(len(spans)), key=distance)].append(w)
    return out
