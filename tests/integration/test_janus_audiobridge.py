"""The bot in a mixed-audio room: a real Janus AudioBridge (with talking events) in a network
namespace, a real ``sealscribe bots`` and ``sealscribe worker``, and aiortc participants who
join the room and speak recordings from memory.

Proven here: three participants speaking fleurs-en recordings in turns, and two of them at
once, are transcribed from the room's one mixed track under the right names (at least 90 %
of the words outside the overlap; speech at once under both names); a participant who opted
out says a canary alone and over someone else, and it is stored nowhere; the room hears the
bot's spoken announcements; and an AudioBridge room that does not exist, a wrong or missing
pin, and a server without the plugin fail precisely.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.mixed import Turn, fleurs_clip, score_fleurs, tracks
from bench.wer import normalise
from pipeline import services
from pipeline.bot.connectors import JoinRejected, connector_for
from pipeline.config import Settings
from pipeline.models import AudioSegment, speakers
from pipeline.services.privacy import privacy_report
from pipeline.services.transcripts import speakers_note
from pipeline.store import schema
from tests.conftest import shared_data
from tests.harness.janus import (
    AUDIO_PIN_ROOM,
    AUDIO_ROOM,
    JANUS_LIB,
    ROOM_PIN,
    janus_server,
    require_janus,
)
from tests.harness.netns import network_namespace, require_netns
from tests.harness.stack import MeetingStack, meeting_stack
from tests.integration.meeting_ns import (
    at_ms,
    drained,
    mixed_meeting,
    recall_bot,
    run,
    send_bot,
    until,
)
from tests.privacy.speech import PHRASES, require_espeak, speak
from workers.transcriber import Transcriber


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeetingStack]:
    if not (JANUS_LIB / "plugins" / "libjanus_audiobridge.so").exists():
        pytest.skip(f"the Janus AudioBridge plugin is missing under {JANUS_LIB}")
    with meeting_stack(tmp_path_factory.mktemp("janus-audiobridge")) as s:
        yield s


@pytest.fixture
def inside(stack: MeetingStack) -> Iterator[None]:
    """The test runs in the namespace: its Redis is the namespace's 127.0.0.1."""
    stack.alive()
    with stack.ns.entered():
        yield
    stack.alive()


@pytest.fixture(scope="module")
def tenant_id(stack: MeetingStack) -> str:
    with stack.ns.entered():
        tenant, _ = services.create_tenant(stack.rt, "acme")
    return tenant.id


def test_three_people_in_a_mixed_room_are_told_apart_and_an_opted_out_one_is_kept_nowhere(
    stack: MeetingStack, tenant_id: str, inside: None
) -> None:
    """A, B and C speak fleurs-en recordings in turns, then A and B at once; D, who opted
    out, says a canary alone and then over C. From the room's mix alone (AudioBridge sends
    no track per person), at least 90 % of the words outside the overlap are under the name
    of who said them, the overlap is under both names, D's canary is in no transcript and
    nothing under D's name (nor any key of D's) exists; the transcript and the privacy
    report say the speakers come from talking events."""
    require_espeak()
    rt = stack.rt
    meeting = services.create_meeting(rt, tenant_id, transcription=True)
    services.set_consent(rt, meeting.id, "D", opted_out=True)
    url = stack.janus.join_url(AUDIO_ROOM, audiobridge=True)
    canary = speak(PHRASES["Flintwick"])
    shared_data("fleurs-en")
    turns = [
        Turn("A", 1.0, *fleurs_clip(0)),
        Turn("B", 12.5, *fleurs_clip(1)),
        Turn("C", 22.5, *fleurs_clip(2)),
        Turn("A", 35.0, *fleurs_clip(3)),
        Turn("B", 36.5, *fleurs_clip(4)),  # over A
        Turn("D", 42.5, canary),
        Turn("C", 46.5, *fleurs_clip(5)),
        Turn("D", 49.5, canary),  # over C
    ]
    overlaps_s = [(36.5, min(turns[3].end, turns[4].end))]
    started = run(mixed_meeting(rt, meeting.id, url, tracks(turns)), timeout=180)
    transcript = drained(rt, meeting.id)
    base = at_ms(meeting, started)
    overlaps = [(base + int(lo * 1000), base + int(hi * 1000)) for lo, hi in overlaps_s]
    for s in transcript:
        print(s.participant_id, s.start_ms - base, s.end_ms - base, s.text)
    words = {w for s in transcript for w in normalise(s.text)}
    assert "flintwick" not in words, "D's canary (D opted out) was transcribed"
    assert not any("D" in speakers(s.participant_id) for s in transcript)
    assert rt.store.redis.keys(schema.audio(meeting.id, "*D*")) == []
    tally = score_fleurs(transcript, turns, overlaps)  # words outside the overlap, +-1 s
    print("attribution:", tally.report())
    assert tally.scored >= 40, f"too few words transcribed to score: {tally.report()}"
    assert tally.right >= 0.9 * tally.scored, f"under the wrong name: {tally.report()}"
    groups = [s for s in transcript if len(speakers(s.participant_id)) > 1]
    assert any(s.participant_id == "A + B" for s in groups), "the overlap is not under both"
    report = privacy_report(rt, meeting.id)
    assert report.speakers == "talking-events"
    source, note = speakers_note(rt, meeting.id)  # the transcript's X-Transcript-Speakers
    assert source == "talking-events" and "not separate tracks" in note


class _Sink:
    """Takes nothing: the refusals come before any audio."""

    def joined(self) -> None: ...
    def track_added(self, participant: str, track: object) -> None: ...
    def track_removed(self, participant: str) -> None: ...
    def mix_added(self, track: object, window_ms: int) -> None: ...
    def mix_removed(self) -> None: ...
    def talking(self, participant: str, talking: bool) -> None: ...
    def present(self, participants: list[str]) -> None: ...


def test_refusals_are_precise_for_mixed_rooms(tmp_path: Path) -> None:
    """An AudioBridge room that does not exist, a wrong pin, a missing pin, and a Janus
    without the AudioBridge plugin: each refused for good (``JoinRejected``, which the bot
    reports as failed without retrying), saying which, and never repeating the pin."""
    require_netns()
    require_janus()

    async def rejected(url: str) -> str:
        connector = connector_for(url)
        try:
            with pytest.raises(JoinRejected) as refused:
                await asyncio.wait_for(connector.run(_Sink()), 20)
        finally:
            await connector.close()
        return str(refused.value)

    with (
        network_namespace() as ns,
        janus_server(ns, tmp_path / "with") as server,
        janus_server(ns, tmp_path / "without", port=8089, audiobridge=False) as bare,
        ns.reached(),
    ):

        async def scenario() -> dict[str, str]:
            wrong = "wrong-pin-4711"
            return {
                "room": await rejected(server.join_url(999, audiobridge=True)),
                "pin": await rejected(server.join_url(AUDIO_PIN_ROOM, wrong, audiobridge=True)),
                "no pin": await rejected(server.join_url(AUDIO_PIN_ROOM, audiobridge=True)),
                "plugin": await rejected(bare.join_url(AUDIO_ROOM, audiobridge=True)),
                "right pin": await ok(server.join_url(AUDIO_PIN_ROOM, ROOM_PIN, audiobridge=True)),
            }

        async def ok(url: str) -> str:
            connector = connector_for(url)
            task = asyncio.create_task(connector.run(_Sink()))
            try:
                async with asyncio.timeout(20):
                    while not getattr(connector, "_joined", False):
                        assert not task.done(), task.exception()
                        await asyncio.sleep(0.05)
            finally:
                await connector.close()
                await task
            return "joined"

        with ns.entered():
            said = asyncio.run(scenario())
    assert said == {
        "room": "Janus AudioBridge room 999 does not exist",
        "pin": f"Janus refused the pin for AudioBridge room {AUDIO_PIN_ROOM}",
        "no pin": f"Janus AudioBridge room {AUDIO_PIN_ROOM} needs a pin (add ?pin=...)",
        "plugin": f"Janus at {ns.host_addr}:8089 has no AudioBridge plugin",
        "right pin": "joined",
    }
    assert not any("4711" in text or ROOM_PIN in text for text in said.values())


class Ears:
    """A listener in the mixed room (a second AudioBridge connector): the mix it hears, as
    16 kHz mono PCM."""

    def __init__(self) -> None:
        self.pcm = bytearray()
        self._reader: asyncio.Task[None] | None = None

    def joined(self) -> None: ...
    def track_added(self, participant: str, track: object) -> None: ...
    def track_removed(self, participant: str) -> None: ...
    def mix_removed(self) -> None: ...
    def talking(self, participant: str, talking: bool) -> None: ...
    def present(self, participants: list[str]) -> None: ...

    def mix_added(self, track: MediaStreamTrack, window_ms: int) -> None:
        self._reader = asyncio.create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                for piece in resampler.resample(frame):  # type: ignore[arg-type]
                    self.pcm += bytes(piece.planes[0])[: piece.samples * 2]

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()


def test_the_mixed_room_hears_the_bot_announce_itself_and_the_switch(
    stack: MeetingStack, tenant_id: str, inside: None
) -> None:
    """Someone in an AudioBridge room (where a spoken notice may be the only one: a phone
    caller sees no chat) hears the bot say it joined and that transcription is now on, as
    tiny.en transcribes what they heard; each is in the privacy report as a voice notice."""
    rt = stack.rt
    meeting = services.create_meeting(rt, tenant_id, transcription=False)
    url = stack.janus.join_url(AUDIO_ROOM, audiobridge=True)
    ears = Ears()

    def voiced() -> list[str]:
        return [what for _, what, _ in privacy_report(rt, meeting.id).notices if "voice" in what]

    async def scenario() -> None:
        listener = connector_for(url)
        listening = asyncio.create_task(listener.run(ears))
        try:
            await until(lambda: ears._reader is not None, "the listener hearing the mix")
            await send_bot(rt, meeting.id, url)
            await until(lambda: voiced() == ["voice:join"], "the join announcement", 30)
            await asyncio.to_thread(services.set_transcription, rt, meeting.id, True)
            await until(lambda: voiced() == ["voice:join", "voice:on"], "the switch-on one", 30)
        finally:
            await ears.stop()
            await listener.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listening, 5)
        await recall_bot(rt, meeting.id)

    run(scenario())
    transcriber = Transcriber(Settings.from_env({}), cpu_threads=1)
    said = transcriber.transcribe(AudioSegment("ears", 0, 0, 16000, bytes(ears.pcm)), "en").text
    words = set(normalise(said))
    assert {"meeting", "transcribed", "out", "time"} <= words, said  # "...opt out at any time"
    assert {"transcription", "now", "on"} <= words, said
