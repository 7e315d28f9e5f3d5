"""Speaker attribution in a mixed-audio room: a real Janus AudioBridge (talking events on), the
real bot, capture, worker and tiny.en, and participants speaking recordings from memory.

    .venv/bin/python -m bench.mixed                  # both scripts below
    .venv/bin/python -m bench.mixed --script ami     # or one: fleurs, ami
    .venv/bin/python -m bench.mixed --packets 25     # the room's audio_active_packets
    .venv/bin/python -m bench.mixed --level 35       # and its audio_level_average
    .venv/bin/python -m bench.mixed --runs 3         # each script three times

Needs root (a network namespace), the janus package and ``shared/data``. Scripts:

* ``fleurs``: three participants read fleurs-en sentences in turns (a second apart), then two
  at once; the script of ``tests/integration/test_janus_audiobridge.py``, without its
  opted-out canary. A word is scored if only one participant's sentences hold it and it lies
  more than a second from the overlap: right if it is under that participant's name.
* ``ami``: the four headsets of the AMI ES2004 excerpt (60 s of a real meeting: short turns,
  backchannels, people talking over each other; each headset also carries the others
  faintly), one participant each. A word is scored if exactly one speaker's RTTM turn holds
  its middle, with 0.5 s to spare either side: right if it is under that speaker's name.

Both report the words scored, the share under the right name, under a group (several at
once) and under a wrong single name, and how late captions come because of the mix's hold
(the frames wait for the talking events). Recordings are brought to -24 dBFS of speech
first, as a browser's automatic gain would (fleurs-en is published at about -67 dBFS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.wer import normalise
from pipeline.audio.decode import decode_file
from pipeline.capture.mix import MixTiming
from pipeline.models import TranscriptSegment, speakers

__all__ = ["SECOND", "Tally", "Turn", "at_level", "fleurs_clip", "score_fleurs", "tracks"]

SECOND = 32000  # bytes of 16 kHz s16 mono
SPEECH_DBFS = -24.0
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: the AudioBridge room each run creates with the settings measured
BENCH_ROOM = 3131


def at_level(pcm: bytes) -> bytes:
    """``pcm`` with its speech (samples above a twentieth of the peak) at ``SPEECH_DBFS``."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    loud = np.abs(x) > np.abs(x).max() / 20 if x.size else np.zeros(0, dtype=bool)
    rms = float(np.sqrt(np.mean(x[loud] ** 2))) if loud.any() else 1.0
    gain = 32768 * 10 ** (SPEECH_DBFS / 20) / rms
    return bytes(np.clip(x * gain, -32768, 32767).astype("<i2").tobytes())


def fleurs_clip(n: int, data: Path = DATA) -> tuple[bytes, str]:
    """fleurs-en clip ``n`` at a speaking level, and its reference transcript."""
    folder = data / "fleurs-en"
    pcm = decode_file(folder / f"fleurs-en-{n:03d}.ogg", 30)
    return at_level(pcm), (folder / f"fleurs-en-{n:03d}.txt").read_text()


@dataclass
class Turn:
    """``who`` says ``pcm`` from ``at`` seconds into the script."""

    who: str
    at: float
    pcm: bytes
    text: str = ""

    @property
    def end(self) -> float:
        return self.at + len(self.pcm) / SECOND


def tracks(turns: list[Turn]) -> dict[str, bytes]:
    """Each participant's whole track: their turns at their times, silence between."""
    length = max(t.end for t in turns) + 2
    out: dict[str, bytearray] = {}
    for t in turns:
        buf = out.setdefault(t.who, bytearray(int(length * SECOND) // 2 * 2))
        at = int(t.at * SECOND) // 2 * 2
        buf[at : at + len(t.pcm)] = t.pcm
    return {who: bytes(b) for who, b in out.items()}


def owners(turns: list[Turn]) -> dict[str, str]:
    """Each word said by exactly one participant -> who said it."""
    said: dict[str, set[str]] = {}
    for t in turns:
        for word in normalise(t.text):
            said.setdefault(word, set()).add(t.who)
    return {w: next(iter(who)) for w, who in said.items() if len(who) == 1}


def fleurs_script() -> tuple[list[Turn], list[tuple[float, float]]]:
    """Turns a second apart, then A and B at once; (turns, overlaps in seconds)."""
    turns = [
        Turn("A", 1.0, *fleurs_clip(0)),
        Turn("B", 12.5, *fleurs_clip(1)),
        Turn("C", 22.5, *fleurs_clip(2)),
        Turn("A", 35.0, *fleurs_clip(3)),
        Turn("B", 36.5, *fleurs_clip(4)),
        Turn("C", 46.5, *fleurs_clip(5)),
    ]
    return turns, [(36.5, min(turns[3].end, turns[4].end))]


@dataclass
class Tally:
    right: int = 0
    group: int = 0
    wrong: int = 0

    @property
    def scored(self) -> int:
        return self.right + self.group + self.wrong

    def add(self, label: str, truth: str) -> None:
        if label == truth:
            self.right += 1
        elif len(speakers(label)) > 1:
            self.group += 1
        else:
            self.wrong += 1

    def report(self) -> dict[str, Any]:
        n = max(self.scored, 1)
        return {
            "words_scored": self.scored,
            "right": round(100 * self.right / n, 1),
            "under_a_group": round(100 * self.group / n, 1),
            "wrong_name": round(100 * self.wrong / n, 1),
        }


def score_fleurs(
    transcript: list[TranscriptSegment],
    turns: list[Turn],
    overlaps_ms: list[tuple[int, int]],
    margin_ms: int = 1000,
) -> Tally:
    own = owners(turns)
    tally = Tally()
    for segment in transcript:
        for word in segment.words:
            middle = (word.start_ms + word.end_ms) // 2
            if any(lo - margin_ms <= middle <= hi + margin_ms for lo, hi in overlaps_ms):
                continue
            for w in normalise(word.word):
                if w in own:
                    tally.add(segment.participant_id, own[w])
    return tally


def ami_script() -> tuple[list[Turn], dict[str, list[tuple[float, float]]]]:
    """The four AMI headsets as participants A-D from 0 s; each one's RTTM turns."""
    from bench.crosstalk import load_ami

    pcms, turns, _ = load_ami()
    names = "ABCD"
    return (
        [Turn(names[n], 0.0, at_level(pcm)) for n, pcm in enumerate(pcms)],
        {names[n]: t for n, t in enumerate(turns)},
    )


def score_ami(
    transcript: list[TranscriptSegment],
    rttm: dict[str, list[tuple[float, float]]],
    base_ms: int,
    collar_s: float = 0.5,
) -> Tally:
    tally = Tally()
    for segment in transcript:
        for word in segment.words:
            middle = ((word.start_ms + word.end_ms) / 2 - base_ms) / 1000
            near = [
                who
                for who, spans in rttm.items()
                if any(a - collar_s <= middle <= b + collar_s for a, b in spans)
            ]
            inside = [who for who, spans in rttm.items() if any(a <= middle <= b for a, b in spans)]
            if len(near) == 1 and inside == near:
                tally.add(segment.participant_id, near[0])
    return tally


def run_script(name: str, packets: int, level: int) -> dict[str, Any]:
    """One script through a fresh namespace, Janus, Redis, worker and bot service, in a room
    created with ``packets`` and ``level`` (``audio_active_packets``, ``audio_level_average``)."""
    from pipeline import services
    from tests.harness.janus import ROOM_SECRET
    from tests.harness.stack import meeting_stack
    from tests.integration.meeting_ns import at_ms, drained, mixed_meeting
    from tests.integration.publishers import create_audio_room

    turns, truth = fleurs_script() if name == "fleurs" else ami_script()
    with (
        tempfile.TemporaryDirectory(prefix="bench-mixed-") as tmp,
        meeting_stack(Path(tmp)) as stack,
        stack.ns.entered(),
    ):
        rt = stack.rt
        tenant, _ = services.create_tenant(rt, "bench")
        meeting = services.create_meeting(rt, tenant.id, transcription=True)
        url = stack.janus.join_url(BENCH_ROOM, audiobridge=True).replace(
            "audio_active_packets=10", f"audio_active_packets={packets}"
        )

        async def scenario() -> float:
            await create_audio_room(url, ROOM_SECRET, packets, level)
            return await mixed_meeting(rt, meeting.id, url, tracks(turns))

        started = asyncio.run(scenario())
        transcript = drained(rt, meeting.id, timeout=300)
        base = at_ms(meeting, started)
    if name == "fleurs":
        assert isinstance(truth, list)
        overlaps = [(base + int(a * 1000), base + int(b * 1000)) for a, b in truth]
        tally = score_fleurs(transcript, turns, overlaps)
    else:
        assert isinstance(truth, dict)
        tally = score_ami(transcript, truth, base)
    groups = sorted({s.participant_id for s in transcript if len(speakers(s.participant_id)) > 1})
    return {
        "script": name,
        "audio_active_packets": packets,
        "audio_level_average": level,
        **tally.report(),
        "segments": len(transcript),
        "groups": groups,
        "caption_hold_ms": MixTiming(packets * 20).hold_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", choices=["fleurs", "ami", "both"], default="both")
    parser.add_argument("--packets", type=int, default=10, help="audio_active_packets")
    parser.add_argument("--level", type=int, default=45, help="audio_level_average")
    parser.add_argument("--runs", type=int, default=1, help="runs of each script")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    names = ["fleurs", "ami"] if args.script == "both" else [args.script]
    results = []
    for name in names:
        for _ in range(args.runs):
            result = run_script(name, args.packets, args.level)
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
