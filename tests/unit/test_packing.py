"""Packing a speaker's waiting segments into one Whisper window and splitting the words back
(workers/packing.py, workers/transcriber.py ``_split``): pure functions, fake Whisper output."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import Settings
from pipeline.models import AudioSegment, TranscriptSegment
from workers import packing
from workers.packing import Item, choose, estimate_ms, plan, splice, split_words
from workers.transcriber import Transcriber, _split, _to_transcript


@dataclass(frozen=True)
class FakeWord:
    start: float
    end: float
    word: str
    probability: float = 0.9


@dataclass(frozen=True)
class FakeSegment:
    start: float
    end: float
    text: str
    words: list[FakeWord]


def audio(participant: str, seq: int, start_ms: int, seconds: float, **kw: int) -> AudioSegment:
    return AudioSegment(participant, seq, start_ms, 16000, bytes(int(seconds * 32000)), **kw)


# -- plan -------------------------------------------------------------------------------------


def test_a_speakers_segments_share_a_window_in_stream_order() -> None:
    items = [Item("a", 3000, 2), Item("b", 3000, 0), Item("a", 3000, 1), Item("a", 3000, 0)]
    windows = plan(items)
    assert windows == [[3, 2, 0], [1]]  # a's window first (its first item came first)


def test_windows_never_mix_keys_and_never_exceed_the_limit() -> None:
    items = [Item(("m1", "p1"), 9000, i) for i in range(5)] + [Item(("m1", "p2"), 9000, 0)]
    windows = plan(items, max_ms=28000, gap_ms=300)
    assert windows == [[0, 1, 2], [3, 4], [5]]  # 3 x 9 s + 2 gaps = 27.6 s fits, 4 do not


def test_a_long_segment_and_one_without_key_go_alone() -> None:
    items = [Item("a", 29000), Item("a", 1000), Item(None, 1000), Item(None, 1000)]
    assert plan(items) == [[0], [1], [2], [3]]


@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), st.integers(0, 40000)), max_size=30)
)
@settings(max_examples=200, deadline=None)
def test_plan_places_every_item_once_within_limits(raw: list[tuple[str | None, int]]) -> None:
    items = [Item(k, d, i) for i, (k, d) in enumerate(raw)]
    windows = plan(items, max_ms=28000, gap_ms=300)
    assert sorted(i for w in windows for i in w) == list(range(len(items)))
    for w in windows:
        assert len({items[i].key for i in w}) == 1
        if len(w) > 1:
            assert items[w[0]].key is not None
            assert sum(items[i].duration_ms for i in w) + 300 * (len(w) - 1) <= 28000
            assert [items[i].order for i in w] == sorted(items[i].order for i in w)


# -- choose -----------------------------------------------------------------------------------


def test_choose_prefers_the_taken_speakers_segments_then_the_oldest() -> None:
    taken = [Item("a", 3000)]
    candidates = [Item("b", 3000), Item("c", 3000), Item("a", 3000), Item("a", 20000)]
    # "a" fills its window first (even the newer ones), then b and c get one window each
    assert choose(taken, candidates, windows=3) == [2, 3, 0, 1]
    # one window only: a's segments that fit, nobody else
    assert choose(taken, candidates, windows=1) == [2, 3]


def test_choose_opens_windows_for_the_oldest_when_nothing_is_taken() -> None:
    candidates = [Item("b", 3000), Item("c", 3000), Item("b", 3000), Item("d", 3000)]
    assert choose([], candidates, windows=2) == [0, 2, 1]  # b, b's next, then c; d waits


def test_choose_takes_nothing_when_the_taken_fill_the_windows() -> None:
    taken = [Item("a", 27000), Item("b", 27000)]
    assert choose(taken, [Item("a", 3000), Item("c", 1000)], windows=2) == []
    assert choose([Item("a", 1000)], [Item("c", 1000)], windows=1) == []


def test_estimate_from_sealed_size() -> None:
    assert estimate_ms(32000 * 3) == 3000
    assert estimate_ms(0) == 0


# -- splice and split -------------------------------------------------------------------------


def test_splice_puts_silence_between_parts() -> None:
    parts = [np.ones(16000, dtype=np.float32), np.ones(8000, dtype=np.float32)]
    samples, spans = splice(parts, gap_ms=300)
    assert len(samples) == 16000 + 4800 + 8000
    assert spans == [(0.0, 1.0), (1.3, 1.8)]
    assert not samples[16000:20800].any() and samples[20800:].all()


def test_words_go_to_the_span_their_middle_is_in() -> None:
    spans = [(0.0, 1.0), (1.3, 2.0)]
    words = [
        FakeWord(0.1, 0.4, " one"),
        FakeWord(0.8, 1.4, " two"),  # across the boundary, middle 1.1 in the gap: nearer 1.0
        FakeWord(0.9, 1.6, " three"),  # middle 1.25: in the gap, nearer the second span
        FakeWord(1.5, 1.9, " four"),
        FakeWord(2.2, 2.4, " five"),  # after the last span: the nearest is the last
    ]
    assert [[w.word for w in ws] for ws in split_words(words, spans)] == [
        [" one", " two"],
        [" three", " four", " five"],
    ]


def test_a_word_stretched_over_the_gap_stays_where_it_starts() -> None:
    # Whisper ends the last word before a pause where the next speech starts: "nation"
    # said at 0.74 s of a segment ending at 1.15 s "lasts" until 2.26 s, deep in the next
    spans = [(0.0, 1.15), (1.45, 2.32)]
    words = [
        FakeWord(0.52, 0.74, " the"),
        FakeWord(0.74, 2.26, " nation."),
        FakeWord(2.0, 2.2, " a"),
    ]
    assert [[w.word for w in ws] for ws in split_words(words, spans)] == [
        [" the", " nation."],
        [" a"],
    ]


def test_split_gives_each_segment_its_words_on_its_own_timeline() -> None:
    a = audio("p", 4, 50_000, 1.0)
    b = audio("p", 5, 90_000, 1.0)
    spans = [(0.0, 1.0), (1.3, 2.3)]
    seg = FakeSegment(
        0.0,
        2.3,
        " hello there general kenobi",
        [
            FakeWord(0.1, 0.4, " hello"),
            FakeWord(0.5, 0.9, " there"),
            FakeWord(1.25, 1.8, " general"),  # starts in the gap: clamped to b's start
            FakeWord(1.9, 2.5, " kenobi"),  # ends after b: clamped to b's end
        ],
    )
    ta, tb = _split([a, b], [seg], spans, "en", False)
    assert (ta.seq, ta.text, ta.start_ms, ta.end_ms) == (4, "hello there", 50_000, 50_900)
    assert [(w.start_ms, w.end_ms) for w in ta.words] == [(50_100, 50_400), (50_500, 50_900)]
    assert (tb.seq, tb.text, tb.start_ms) == (5, "general kenobi", 90_000)
    assert [(w.start_ms, w.end_ms) for w in tb.words] == [(90_000, 90_500), (90_600, 91_000)]


def test_split_honours_keep_windows_and_leaves_an_empty_segment_empty() -> None:
    # piece 1 of a cut utterance keeps words before 51 s; piece 2 (overlapping by 1 s)
    # keeps those from 51 s on; a third segment said nothing Whisper heard
    one = audio("p", 1, 50_000, 2.0, keep_to_ms=51_000)
    two = audio("p", 2, 50_000, 2.0, keep_from_ms=51_000)
    three = audio("p", 3, 60_000, 1.0)
    spans = [(0.0, 2.0), (2.3, 4.3), (4.6, 5.6)]
    words = [
        FakeWord(0.1, 0.5, " alpha"),
        FakeWord(1.2, 1.6, " beta"),  # 51.4 s: piece 2's, though heard in piece 1 too
        FakeWord(2.4, 2.8, " alpha"),  # piece 2 heard alpha again: piece 1's word
        FakeWord(3.5, 3.9, " beta"),
    ]
    t1, t2, t3 = _split([one, two, three], [FakeSegment(0, 4.3, "", words)], spans, "en", False)
    assert t1.text == "alpha" and t2.text == "beta"
    assert (t3.text, t3.words, t3.start_ms, t3.end_ms) == ("", (), 60_000, 61_000)


def test_constants_fit_whisper() -> None:
    assert packing.WINDOW_MS + packing.GAP_MS < 30_000


class ScriptedTranscriber(Transcriber):
    """The real ``transcribe_many`` (grouping, packing, the retry) over a scripted model:
    a packed window hears only its first segment, a lone segment is heard as itself."""

    def __init__(self, cpu: bool = False) -> None:
        super().__init__(Settings.from_env({}))
        self.windows: list[list[tuple[str, int]]] = []
        self.device = "cpu" if cpu else "cuda"  # on the CPU short utterances go alone

    def load(self) -> Any:
        return SimpleNamespace(model=SimpleNamespace(device=self.device))

    def _transcribe_window(
        self, audios: list[AudioSegment], language: str | None, translate: bool
    ) -> list[TranscriptSegment]:
        if len(audios) == 1:
            return [self.transcribe(audios[0], language, translate)]
        return self._transcribe_batch([audios], language or "en", translate)[0]

    def _options(
        self, language: str | None, translate: bool, interim: bool = False
    ) -> dict[str, Any]:
        return {"language": "en", "task": "translate" if translate else "transcribe"}

    def transcribe(
        self,
        audio: AudioSegment,
        language: str | None = None,
        translate: bool = False,
        interim: bool = False,
    ) -> TranscriptSegment:
        self.windows.append([(audio.participant_id, audio.seq)])
        word = FakeWord(0.1, 0.5, f" {audio.participant_id}{audio.seq}")
        return _to_transcript(audio, [FakeSegment(0.1, 0.5, word.word, [word])], "en", False)

    def _transcribe_batch(
        self,
        windows: list[list[AudioSegment]],
        language: str,
        translate: bool,
        interim: bool = False,
    ) -> list[list[TranscriptSegment]]:
        out = []
        for audios in windows:
            self.windows.append([(a.participant_id, a.seq) for a in audios])
            _, spans = splice([np.zeros(len(a.pcm) // 2, dtype=np.float32) for a in audios])
            word = FakeWord(spans[0][0] + 0.1, spans[0][0] + 0.5, " first")
            seg = FakeSegment(word.start, word.end, word.word, [word])
            out.append(_split(audios, [seg], spans, language, translate))
        return out


def test_packs_by_key_and_hears_a_skipped_segment_again_alone() -> None:
    t = ScriptedTranscriber()
    reqs = [
        (audio("a", 0, 0, 3.0), "en", False),
        (audio("b", 0, 0, 3.0), "en", False),
        (audio("a", 1, 5000, 9.0), "en", False),
        (audio("c", 0, 0, 3.0), "en", False),
        (audio("a", 2, 15000, 5.0), "en", False),  # crosstalk, say: not worth a second look
    ]
    out = t.transcribe_many(reqs, [("m", "a"), ("m", "b"), ("m", "a"), None, ("m", "a")])
    assert t.windows[:3] == [[("a", 0), ("a", 1), ("a", 2)], [("b", 0)], [("c", 0)]]
    assert t.windows[3:] == [[("a", 1)]]  # the packed window skipped a.1: heard alone
    assert [o.text for o in out] == ["first", "first", "a1", "first", ""]
    assert [(o.participant_id, o.seq) for o in out] == [
        ("a", 0),
        ("b", 0),
        ("a", 1),
        ("c", 0),
        ("a", 2),
    ]


def test_on_the_cpu_short_utterances_are_heard_alone_and_the_rest_batched() -> None:
    """A whole utterance up to SEALSCRIBE_SHORT_WINDOW_MS is encoded at its own length, alone
    (cheaper on the CPU than its share of a padded batch); packed windows, long utterances
    and pieces of a cut one still share a batch."""
    t = ScriptedTranscriber(cpu=True)
    reqs = [
        (audio("a", 0, 0, 3.0), "en", False),
        (audio("b", 0, 0, 3.0, keep_to_ms=2000), "en", False),  # a piece of a cut utterance
        (audio("c", 0, 0, 12.0), "en", False),
        (audio("c", 1, 13_000, 12.0), "en", False),
        (audio("d", 0, 0, 25.0), "en", False),
        (audio("e", 0, 0, 19.0), "en", False),
    ]
    keys = [("m", "a"), ("m", "b"), ("m", "c"), ("m", "c"), ("m", "d"), ("m", "e")]
    out = t.transcribe_many(reqs, keys)
    assert t.windows[:2] == [[("a", 0)], [("e", 0)]]  # alone, in order
    assert t.windows[2:5] == [[("b", 0)], [("c", 0), ("c", 1)], [("d", 0)]]  # one batch
    assert t.windows[5:] == [[("c", 1)]]  # the scripted model skipped it: heard again alone
    assert [(o.participant_id, o.seq) for o in out] == [
        (r[0].participant_id, r[0].seq) for r in reqs
    ]
    # on a GPU the batch takes them all
    t = ScriptedTranscriber()
    t.transcribe_many(reqs, keys)
    assert len(t.windows) == 6 and [("a", 0)] in t.windows


def test_a_sentence_read_twice_counts_as_a_failed_short_decode() -> None:
    from workers.transcriber import _repeats

    assert _repeats("The Flintwick protocol is ready! The Flintwick protocol is ready!")
    assert _repeats("we went to the shop to the shop to the shop")
    assert not _repeats("I think, I think so")  # two words: people do that
    assert not _repeats("the cat sat on the mat and the dog sat on the rug")
