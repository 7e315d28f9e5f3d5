"""The chat notices a policy change calls for: the switch, the consent mode, and each
participant's consent, named once each."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.bot.notices import Told, changes, joined
from pipeline.models import Meeting


def told(
    on: bool = True, mode: str = "notice", out: Iterable[str] = (), inn: Iterable[str] = ()
) -> Told:
    return (on, mode, frozenset(out), frozenset(inn))


def test_each_change_is_told_once() -> None:
    assert list(changes(told(), told())) == []
    assert [k for k, _ in changes(told(on=False), told())] == ["on"]
    assert [k for k, _ in changes(told(), told(on=False))] == ["off"]
    assert [t for _, t in changes(told(), told(mode="opt-in"))] == [
        "The consent mode is now opt-in. Nobody is transcribed until they consent (/optin)."
    ]
    out = list(changes(told(), told(out={"Alice"})))
    assert out == [("consent", "Alice opted out of transcription: nothing they say is kept.")]
    back = list(changes(told(out={"Alice"}), told(inn={"Alice"})))
    assert back == [("consent", "Alice opted in: they are transcribed while it is on.")]
    consented = list(changes(told(mode="opt-in"), told(mode="opt-in", inn={"Bob"})))
    assert [t for _, t in consented] == ["Bob opted in: they are transcribed while it is on."]


def test_the_join_notice_says_the_switch_the_mode_and_the_commands() -> None:
    text = joined(Meeting("m_1", "t", 0.0, transcription=False, consent_mode="opt-in"))
    assert "Transcription is OFF" in text and "until they consent" in text
    assert all(c in text for c in ("/optout", "/optin", "/status"))
