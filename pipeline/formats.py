"""Transcript export formats: txt, srt, vtt, json. Speaker labels and times in each."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict

from pipeline.models import TranscriptSegment

__all__ = ["FORMATS", "render"]

FORMATS = ("txt", "srt", "vtt", "json")


def _clock(ms: int, sep: str) -> str:
    h, rest = divmod(max(ms, 0), 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cue_text(text: str) -> str:
    # A blank line would end a cue early; "-->" would be read as a timing line.
    return " ".join(text.split()).replace("-->", "->")


def render(
    segments: Sequence[TranscriptSegment], fmt: str, names: Mapping[str, str] | None = None
) -> str:
    """``segments`` in time order as ``fmt``; ``names`` maps participant ids to labels."""
    names = names or {}
    label = {s.participant_id: names.get(s.participant_id, s.participant_id) for s in segments}
    spoken = [s for s in segments if s.text.strip()]
    if fmt == "txt":
        return "".join(
            f"[{_clock(s.start_ms, '.')[:-4]}] {label[s.participant_id]}: {_cue_text(s.text)}\n"
            for s in spoken
        )
    if fmt == "srt":
        return "\n".join(
            f"{i}\n{_clock(s.start_ms, ',')} --> {_clock(s.end_ms, ',')}\n"
            f"{label[s.participant_id]}: {_cue_text(s.text)}\n"
            for i, s in enumerate(spoken, 1)
        )
    if fmt == "vtt":
        cues = "".join(
            f"\n{_clock(s.start_ms, '.')} --> {_clock(s.end_ms, '.')}\n"
            f"<v {label[s.participant_id]}>{_cue_text(s.text)}\n"
            for s in spoken
        )
        return "WEBVTT\n" + cues
    if fmt == "json":
        return (
            json.dumps(
                [{**asdict(s), "speaker": label[s.participant_id]} for s in segments], indent=2
            )
            + "\n"
        )
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
