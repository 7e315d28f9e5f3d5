"""The caption protocol (what each caption message says) and the demo's caption printing:
finals as lines; on a terminal, interims on live lines that their finals replace."""

from __future__ import annotations

import io
import json

from pipeline.demo import _CaptionView, _fit
from pipeline.models import TranscriptSegment
from pipeline.services.captions import Caption


def final(text: str = "Hello there.", seq: int = 3, who: str = "alice.b") -> Caption:
    return Caption("1700000000000-4", TranscriptSegment(who, seq, 1200, 2900, text, language="en"))


def interim(text: str = "hello", part: int = 2, seq: int = 3, who: str = "alice.b") -> Caption:
    segment = TranscriptSegment(who, seq, 1200, 2100, text, language="en", part=part)
    return Caption("1700000000000-2", segment)


def test_a_final_says_final_and_its_utterance() -> None:
    doc = final().to_dict()
    assert doc == {
        "kind": "final",
        "cursor": "1700000000000-4",
        "utterance": "alice.b.3",
        "participant": "alice.b",
        "start_ms": 1200,
        "end_ms": 2900,
        "text": "Hello there.",
        "language": "en",
    }
    assert json.loads(json.dumps(doc)) == doc


def test_an_interim_says_interim_its_utterance_and_part() -> None:
    doc = interim().to_dict()
    assert doc == {
        "kind": "interim",
        "cursor": "1700000000000-2",
        "utterance": "alice.b.3",
        "part": 2,
        "participant": "alice.b",
        "start_ms": 1200,
        "end_ms": 2100,
        "text": "hello",
        "language": "en",
    }
    # an utterance's interims and its final share the utterance id, nothing else says so
    assert doc["utterance"] == final().to_dict()["utterance"]
    assert interim(seq=4).to_dict()["utterance"] != doc["utterance"]


def test_not_a_terminal_prints_finals_only() -> None:
    said: list[str] = []
    out = io.StringIO()
    view = _CaptionView(said.append, interims=False, out=out)
    view.show(interim("hel", part=1))
    view.show(interim("hello the", part=2))
    view.show(final("Hello there."))
    view.show(final("  ", seq=4))  # no words: nothing shown
    view.stop()
    assert said == ["   [   1.2 s] alice.b: Hello there."]
    assert out.getvalue() == ""


def test_a_terminal_shows_interims_on_a_live_line_the_final_replaces() -> None:
    said: list[str] = []
    out = io.StringIO()
    view = _CaptionView(lambda line: said.append(f"{out.getvalue()!r}|{line}"), True, out)
    view.show(interim("hel", part=1))
    assert out.getvalue() == "\x1b[2;3m   [   1.2 s] alice.b: hel …\x1b[0m\n"
    view.show(interim("hello the", part=2))
    view.show(interim("stale", part=1))  # older than what is shown: ignored
    view.show(interim("bob speaks", part=1, who="bob"))
    lines = out.getvalue().split("\x1b[1A\x1b[2K")
    assert lines[-1] == (
        "\x1b[2;3m   [   1.2 s] alice.b: hello the …\x1b[0m\n"
        "\x1b[2;3m   [   1.2 s] bob: bob speaks …\x1b[0m\n"
    )
    view.show(final("Hello there."))
    # the live lines were erased before the final was printed, and bob's drawn again after
    assert said[0].endswith("\\x1b[1A\\x1b[2K\\x1b[1A\\x1b[2K'|   [   1.2 s] alice.b: Hello there.")
    assert out.getvalue().endswith("\x1b[2;3m   [   1.2 s] bob: bob speaks …\x1b[0m\n")
    view.stop()
    assert out.getvalue().endswith("\x1b[1A\x1b[2K")
    assert view.drawn == 0 and not view.speaking


def test_a_live_line_fits_the_terminal_and_keeps_the_newest_words() -> None:
    line = "   [   1.2 s] alice: " + " ".join(f"w{i}" for i in range(40)) + " …"
    fitted = _fit(line, 40)
    assert len(fitted) == 40
    assert fitted.startswith("   [   1.2 s] alice: …") and fitted.endswith("w39 …")
    assert _fit("   [ 0.0 s] a: \x1b[31mred\x07", 80) == "   [ 0.0 s] a: [31mred"
