"""The bot end to end in a real Janus meeting: a real ``sealscribe bots`` and ``sealscribe
worker``, a private redis-server and a Janus, all inside a network namespace
(:func:`tests.harness.stack.meeting_stack`), with aiortc participants publishing speech into
VideoRoom rooms from memory.

Proven here: four participants captured, sealed and transcribed under their own names; the
switch turned off mid-meeting stores nothing of the off period; an opted-out participant is
never stored; fleurs-en through Janus keeps its accuracy; bad join requests fail precisely
without disturbing another meeting; and the CLI sends and recalls the bot. (A Janus restart
mid-meeting is a fault test: ``tests/faults/test_janus_restart.py``.)

Where a test inspects the sealed audio the bot stored, the worker is paused meanwhile
(:func:`paused`) so that nothing is transcribed and deleted before it is looked at; it
resumes afterwards and the test then checks the transcript too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import TypeVar

import av
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.wer import normalise
from pipeline import services
from pipeline.audio.decode import decode_file
from pipeline.bot.connectors.janus import JanusConnector
from pipeline.bot.connectors.janus.address import parse_janus_url
from pipeline.bot.connectors.janus.session import JanusSession
from pipeline.bot.connectors.janus.textroom import ChatMessage, TextRoom
from pipeline.config import Settings
from pipeline.egress import UNREACHABLE
from pipeline.errors import InvalidInput, NotFound
from pipeline.models import AudioSegment, BotState, TranscriptSegment
from pipeline.publish import PcmTrack
from pipeline.services.bots import bot_status, join_meeting
from pipeline.services.privacy import privacy_report
from pipeline.store import schema
from tests.conftest import shared_data
from tests.harness.janus import DEFAULT_ROOMS, OPEN_ROOM, PIN_ROOM, Room
from tests.harness.stack import MeetingStack, meeting_stack, paused
from tests.integration.fleurs import fleurs_concatenation, transcript_wer
from tests.integration.meeting_ns import (
    SECOND,
    SealedAudio,
    StateTrail,
    at_ms,
    drained,
    hears,
    leave_all,
    recall_bot,
    run,
    send_bot,
    speaking,
    talk,
    until,
)
from tests.integration.publishers import Publisher, list_participants
from tests.privacy.speech import PHRASES, require_espeak, speak
from workers.transcriber import Transcriber

T = TypeVar("T")

(
    TOGGLE_ROOM,
    CONSENT_ROOM,
    FLEURS_ROOM,
    CAPTURE_ROOM,
    CLI_ROOM,
    CHAT_ROOM,
    VOICE_ROOM,
    OPT_IN_ROOM,
) = range(2001, 2009)
ROOMS = (*DEFAULT_ROOMS, *(Room(r, f"test room {r}") for r in range(2001, 2009)))

#: silence before the speech: Janus tells the bot about a new publisher only once it
#: publishes, and the bot's subscription needs a moment to come up
LEAD = bytes(2 * SECOND)
SPEED = 2.0  # AMI and fleurs-en go out at twice real time
GRACE_MS = 1000  # a switch takes effect within a second


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeetingStack]:
    with meeting_stack(tmp_path_factory.mktemp("janus-bot"), ROOMS) as s:
        yield s
    # Nothing is left running, and the namespace is gone.
    for proc in (s.worker.proc, s.bots.proc):
        assert proc.poll() is not None
    assert not s.redis.running() and not s.janus.running()
    listing = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert s.ns.name not in listing


@pytest.fixture(autouse=True)
def inside(stack: MeetingStack) -> Iterator[None]:
    """Every test runs in the namespace: its Redis is the namespace's 127.0.0.1."""
    stack.alive()
    with stack.ns.entered():
        yield
    stack.alive()


@pytest.fixture(scope="module")
def tenant_id(stack: MeetingStack) -> str:
    with stack.ns.entered():
        tenant, _ = services.create_tenant(stack.rt, "acme")
    return tenant.id


def span(segment: AudioSegment | TranscriptSegment) -> tuple[int, int]:
    if isinstance(segment, AudioSegment):
        return segment.start_ms, segment.start_ms + segment.duration_ms
    return segment.start_ms, segment.end_ms


def common_words(ref: list[str], hyp: list[str]) -> int:
    """How many words of ``ref`` ``hyp`` has, in order (longest common subsequence)."""
    row = [0] * (len(hyp) + 1)
    for word in ref:
        diagonal = 0
        for j, said in enumerate(hyp, 1):
            above = row[j]
            row[j] = diagonal + 1 if word == said else max(above, row[j - 1])
            diagonal = above
    return row[-1]


# -- 1. four participants -----------------------------------------------------------------


def test_four_participants_are_sealed_and_transcribed_under_their_own_names(
    stack: MeetingStack, tenant_id: str
) -> None:
    letters = ("A", "B", "C", "D")  # headset N is speaker letter N (shared/data/NOTICE.md)
    sources = {
        name: LEAD + decode_file(shared_data("ami-es2004", "sources", f"source{i}.wav"), 60)
        for i, name in enumerate(letters)
    }
    refs = {
        name: normalise(
            shared_data("ami-es2004", "text", f"mixture.{name}.words_joined.txt").read_text()
        )
        for name in letters
    }
    rt = stack.rt
    meeting = services.create_meeting(rt, tenant_id, transcription=True)
    url = stack.url(OPEN_ROOM)
    late: list[int] = []
    first: list[AudioSegment] = []

    async def scenario() -> None:
        audio = SealedAudio(rt, meeting)
        await send_bot(rt, meeting.id, url)
        publishers: list[Publisher] = []
        tracks: list[PcmTrack] = []
        try:
            # Paused until every participant's first utterances are stored and looked at;
            # then the worker transcribes while the meeting goes on.
            with paused(stack.worker):
                for name in letters:
                    publisher, track = await speaking(url, name, sources[name], SPEED)
                    publishers.append(publisher)
                    tracks.append(track)
                await until(lambda: hears(rt, meeting.id, *letters), "the bot hearing A, B, C, D")
                await until(
                    lambda: {s.participant_id for s in audio.segments()} == set(letters),
                    "a sealed utterance of each participant",
                    40,
                )
                first.extend(audio.segments())
            for track in tracks:
                await asyncio.wait_for(track.finished.wait(), track.duration / SPEED + 30)
                late.append(track.late)
        finally:
            await leave_all(publishers)
        await recall_bot(rt, meeting.id)  # it stores everything it sealed before leaving

    run(scenario())
    # Each participant's utterances were sealed under their own name (the sealing context
    # binds the name: opening under another fails), 16 kHz.
    print(
        "first sealed utterances:",
        sorted((s.participant_id, s.start_ms, s.duration_ms) for s in first),
        f"; late frames per publisher: {late}",
    )
    assert {s.participant_id for s in first} == set(letters)
    assert all(s.sample_rate == 16000 and s.duration_ms >= 300 for s in first)

    transcript = drained(rt, meeting.id)
    heard: dict[str, list[str]] = defaultdict(list)
    for said in transcript:
        heard[said.participant_id] += normalise(said.text)
    # Every headset also hears the others (shared/data/NOTICE.md), and the segmenter passes
    # that crosstalk on, so WER against one's own words is high (about 0.9 for A and B, with
    # plain faster-whisper on the same utterances too). Attribution is judged by how much of
    # each speaker's reference a participant's transcript recovers, in order: the speaker's
    # own transcript must recover most of it, and more than anybody else's.
    recall = {
        (ref, name): common_words(refs[ref], heard[name]) / len(refs[ref])
        for ref in letters
        for name in letters
    }
    for ref in ("A", "B", "D"):  # C only says "Mm. Yeah."
        print(
            f"reference {ref} recovered by "
            + ", ".join(f"{name} {recall[ref, name]:.2f}" for name in letters)
        )
    for ref in ("A", "B", "D"):
        own = recall[ref, ref]
        best_other = max(recall[ref, name] for name in letters if name != ref)
        assert own >= 0.6, f"{ref}'s transcript recovers {own:.2f} of their words"
        assert own >= best_other + 0.05, (
            f"{ref}'s words: {own:.2f} in their own transcript, {best_other:.2f} in another"
        )
    # D's headset carries the least crosstalk: there the margin is wide.
    assert recall["D", "D"] >= 0.4 + max(recall["D", n] for n in ("A", "B", "C"))


# -- 2. the switch, off and on again mid-meeting -------------------------------------------


def test_switching_off_mid_meeting_stores_nothing_of_the_off_period(
    stack: MeetingStack, tenant_id: str
) -> None:
    rt = stack.rt
    meeting = services.create_meeting(rt, tenant_id, transcription=True)
    url = stack.url(TOGGLE_ROOM)
    speech = talk(40)
    marks: dict[str, int] = {}

    async def scenario() -> None:
        audio = SealedAudio(rt, meeting)
        await send_bot(rt, meeting.id, url)
        eve, _ = await speaking(url, "Eve", speech)
        try:
            await until(lambda: hears(rt, meeting.id, "Eve"), "the bot hearing Eve")
            await until(lambda: bool(audio.of("Eve")), "Eve's first utterance stored")
            marks["off"] = at_ms(meeting, time.time())
            services.set_transcription(rt, meeting.id, False)
            await asyncio.sleep(6)  # Eve keeps talking
            marks["on"] = at_ms(meeting, time.time())
            services.set_transcription(rt, meeting.id, True)
            await until(
                lambda: any(s.start_ms >= marks["on"] for s in audio.of("Eve")),
                "an utterance after switching back on",
            )
        finally:
            await leave_all([eve])
        await recall_bot(rt, meeting.id)

    with paused(stack.worker):
        run(scenario())
        audio = SealedAudio(rt, meeting).segments()
    off, on = marks["off"], marks["on"]

    def check(spans: list[tuple[int, int]], what: str) -> None:
        print(f"{what} (ms from the start; off {off}..{on}): {spans}")
        assert any(end <= off for _, end in spans), f"no {what} before the switch"
        assert any(start >= on for start, _ in spans), f"no {what} after switching on"
        for start, end in spans:
            assert not (end > off + GRACE_MS and start < on), (
                f"{what} {start}..{end} covers the off period {off}..{on}"
            )

    check([span(s) for s in audio], "audio segments")
    transcript = drained(rt, meeting.id)
    check([span(s) for s in transcript], "transcript segments")


# -- 3. consent -----------------------------------------------------------------------------


def test_an_opted_out_participant_is_never_stored(stack: MeetingStack, tenant_id: str) -> None:
    rt = stack.rt
    meeting = services.create_meeting(rt, tenant_id, transcription=True)
    services.set_consent(rt, meeting.id, "B", opted_out=True)  # before the meeting
    url = stack.url(CONSENT_ROOM)
    speech = talk(30)
    marks: dict[str, int] = {}

    async def scenario() -> None:
        audio = SealedAudio(rt, meeting)
        await send_bot(rt, meeting.id, url)
        publishers: list[Publisher] = []
        try:
            for name in ("A", "B", "C"):
                publishers.append((await speaking(url, name, speech))[0])
            await until(lambda: hears(rt, meeting.id, "A", "B", "C"), "the bot hearing A, B, C")
            await until(
                lambda: bool(audio.of("A")) and bool(audio.of("C")),
                "A's and C's first utterances stored",
            )
            marks["c_out"] = at_ms(meeting, time.time())
            services.set_consent(rt, meeting.id, "C", opted_out=True)  # while speaking
            await until(
                lambda: any(s.start_ms >= marks["c_out"] + GRACE_MS for s in audio.of("A")),
                "A's audio after C opted out",
            )
        finally:
            await leave_all(publishers)
        await recall_bot(rt, meeting.id)

    with paused(stack.worker):
        run(scenario())
        audio = SealedAudio(rt, meeting).segments()
        b_keys = rt.store.redis.keys(schema.audio(meeting.id, "B.*"))
    print("stored:", sorted((s.participant_id, *span(s)) for s in audio))
    assert b_keys == []
    assert {s.participant_id for s in audio} == {"A", "C"}
    for segment in audio:
        if segment.participant_id == "C":
            assert span(segment)[1] <= marks["c_out"] + GRACE_MS, span(segment)
    transcript = drained(rt, meeting.id)
    # B was never stored; C's segments still queued when C opted out were purged unread.
    assert transcript and {s.participant_id for s in transcript} == {"A"}


def test_a_participant_opts_out_and_back_in_from_the_chat(
    stack: MeetingStack, tenant_id: str
) -> None:
    """In a room with a text chat, the bot posts its notices there; A types ``/optout`` while
    speaking, then says a canary (spoken by espeak-ng, as the privacy suite does), then types
    ``/optin``: nothing of A is stored from a second after ``/optout`` until ``/optin``, the
    canary is in no transcript, and A is transcribed again after; each answer goes to A
    alone, and the privacy report holds the notices and both changes, made by the
    participant through the chat."""
    require_espeak()
    rt = stack.rt
    meeting = services.create_meeting(rt, tenant_id, transcription=True)
    url = stack.janus.join_url(CHAT_ROOM, textroom=CHAT_ROOM)
    marks: dict[str, int] = {}
    heard: list[ChatMessage] = []
    second = 2 * 16000
    canary = speak(PHRASES["Flintwick"])
    lead = talk(9)  # utterances every 3.5 s: the first is stored before the canary
    speech = lead + bytes(3 * second) + canary + bytes(second) + canary + bytes(4 * second)
    speech += talk(14)
    canary_at = (len(lead) + 3 * second) / second  # seconds into A's track
    canary_end = canary_at + (2 * len(canary) + second) / second

    def said(text: str) -> bool:
        return any(text in m.text for m in heard)

    async def scenario() -> None:
        audio = SealedAudio(rt, meeting)
        await send_bot(rt, meeting.id, url)
        publisher, track = await speaking(url, "A", speech)
        session = JanusSession(parse_janus_url(url))
        await session.create()
        chat = TextRoom(session, CHAT_ROOM, None, heard.append, display="A", history=True)
        await chat.open()
        try:
            await until(lambda: said("sealscribe is in this meeting"), "the join notice")
            await until(lambda: bool(audio.of("A")), "A's first utterance stored")
            assert track._start is not None
            started = track._start
            assert time.monotonic() - started < canary_at - 2, "too late to opt out first"
            marks["out"] = at_ms(meeting, time.time())
            await chat.say("/optout")
            await until(lambda: said("A: you opted out"), "the answer to /optout")
            await until(lambda: said("A opted out of transcription"), "the notice to the room")
            # A keeps talking, opted out: the canary, and a little after it
            await asyncio.sleep(started + canary_end + 1.5 - time.monotonic())
            marks["in"] = at_ms(meeting, time.time())
            await chat.say("/optin")
            await until(lambda: said("A: you are transcribed"), "the answer to /optin")
            await until(
                lambda: any(s.start_ms >= marks["in"] for s in audio.of("A")),
                "A's audio after opting back in",
            )
            await chat.say("/status")
            await chat.say("/dance")
            await until(lambda: said("A: you are being transcribed"), "the answer to /status")
            await until(lambda: said("Unknown command"), "the answer to an unknown command")
        finally:
            await chat.close()
            await session.destroy()
            await leave_all([publisher])
        await recall_bot(rt, meeting.id)

    with paused(stack.worker):
        run(scenario())
        audio = SealedAudio(rt, meeting).of("A")
    words = {w for s in drained(rt, meeting.id) for w in normalise(s.text)}
    assert "flintwick" not in words, "the canary said while opted out was transcribed"
    assert {"fellow", "americans"} <= words, f"A was not transcribed around it: {words}"
    quiet = (marks["out"] + GRACE_MS, marks["in"])
    inside = [span(s) for s in audio if span(s)[1] > quiet[0] and span(s)[0] < quiet[1]]
    assert not inside, f"A's audio stored while A had opted out: {inside} within {quiet}"
    assert any(span(s)[1] <= marks["out"] + GRACE_MS for s in audio)
    assert any(span(s)[0] >= marks["in"] for s in audio)
    whispers = [m for m in heard if m.text.startswith("A: ")]
    assert whispers and all(m.whisper for m in whispers), "answers go to A alone"
    report = privacy_report(rt, meeting.id)
    assert [(what, who.split("@")[0]) for _, what, who in report.consent_changes] == [
        ("A:opted-out", "participant-chat"),
        ("A:opted-in", "participant-chat"),
    ]
    kinds = [what for _, what, _ in report.notices]
    assert kinds[0] == "text:join" and kinds.count("text:consent") == 2, kinds


def test_in_an_opt_in_room_only_who_consents_in_the_chat_is_kept(
    stack: MeetingStack, tenant_id: str
) -> None:
    """An opt-in meeting in a Janus room: A consents by typing ``/optin`` in the room's chat,
    B never does. A is stored from then on; nothing of B, even while A is transcribed."""
    rt = stack.rt
    meeting = services.create_meeting(rt, tenant_id, transcription=True, consent_mode="opt-in")
    url = stack.janus.join_url(OPT_IN_ROOM, textroom=OPT_IN_ROOM)
    heard: list[ChatMessage] = []

    async def scenario() -> None:
        audio = SealedAudio(rt, meeting)
        await send_bot(rt, meeting.id, url)
        publishers = [(await speaking(url, name, talk(30)))[0] for name in ("A", "B")]
        session = JanusSession(parse_janus_url(url))
        await session.create()
        chat = TextRoom(session, OPT_IN_ROOM, None, heard.append, display="A")
        await chat.open()
        try:
            await until(lambda: hears(rt, meeting.id, "A", "B"), "the bot hearing A and B")
            await asyncio.sleep(4)  # both speak, neither has consented
            assert not audio.segments(), "audio stored before anyone consented"
            await chat.say("/optin")
            await until(lambda: any("A: you are transcribed" in m.text for m in heard), "answer")
            await until(lambda: len(audio.of("A")) >= 2, "A's audio after consenting", 30)
        finally:
            await chat.close()
            await session.destroy()
            await leave_all(publishers)
        await recall_bot(rt, meeting.id)

    with paused(stack.worker):
        run(scenario())
        stored = SealedAudio(rt, meeting).segments()
        b_keys = rt.store.redis.keys(schema.audio(meeting.id, "B.*"))
    assert b_keys == [] and {s.participant_id for s in stored} == {"A"}
    assert not rt.store.meetings.has_participant_keys(meeting.id, "B"), "no keys made for B"
    assert rt.store.meetings.get(meeting.id).opted_in == {"A"}


class Listener:
    """A plain participant's ears: every audio track it is given, as 16 kHz mono PCM."""

    def __init__(self) -> None:
        self.pcm: dict[str, bytearray] = {}
        self._readers: list[asyncio.Task[None]] = []

    def joined(self) -> None:
        pass

    def track_added(self, participant: str, track: MediaStreamTrack) -> None:
        self._readers.append(asyncio.create_task(self._read(participant, track)))

    def track_removed(self, participant: str) -> None:
        pass

    async def _read(self, participant: str, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        out = self.pcm.setdefault(participant, bytearray())
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                for piece in resampler.resample(frame):  # type: ignore[arg-type]
                    out += bytes(piece.planes[0])[: piece.samples * 2]

    async def stop(self) -> None:
        for task in self._readers:
            task.cancel()


def test_the_room_hears_the_bot_announce_itself_and_the_switch(
    stack: MeetingStack, tenant_id: str
) -> None:
    """A plain participant in the room hears the bot's spoken announcements: when it joins and
    when transcription is switched on (tiny.en transcribes what they heard); each is in the
    privacy report as a voice notice, and the bot stops publishing after each."""
    rt = stack.rt
    meeting = services.create_meeting(rt, tenant_id, transcription=False)
    url = stack.url(VOICE_ROOM)
    ears = Listener()

    def voiced() -> list[str]:
        return [what for _, what, _ in privacy_report(rt, meeting.id).notices if "voice" in what]

    async def scenario() -> None:
        listener = JanusConnector.from_url(url)
        listening = asyncio.create_task(listener.run(ears))
        try:
            await send_bot(rt, meeting.id, url)
            await until(lambda: voiced() == ["voice:join"], "the join announcement", 30)
            await asyncio.to_thread(services.set_transcription, rt, meeting.id, True)
            await until(lambda: voiced() == ["voice:join", "voice:on"], "the switch-on one", 30)
            await asyncio.sleep(1.0)
            assert not [p for p in await list_participants(url) if p.get("publisher")], (
                "the bot stopped publishing after each announcement"
            )
        finally:
            await ears.stop()
            await listener.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listening, 5)
        await recall_bot(rt, meeting.id)

    run(scenario())
    heard = {who: bytes(pcm) for who, pcm in ears.pcm.items() if who.startswith("sealscribe")}
    assert heard, f"no announcement was heard: {sorted(ears.pcm)}"
    transcriber = Transcriber(Settings.from_env({}), cpu_threads=1)
    said = " ".join(
        transcriber.transcribe(AudioSegment(who, 0, 0, 16000, pcm), "en").text
        for who, pcm in heard.items()
    )
    words = set(normalise(said))
    assert {"meeting", "transcribed", "opt", "out"} <= words, said
    assert {"transcription", "now", "on"} <= words, said


# -- 4. accuracy through Janus ---------------------------------------------------------------


def test_fleurs_through_janus_keeps_accuracy(stack: MeetingStack, tenant_id: str) -> None:
    pcm, reference = fleurs_concatenation()
    rt = stack.rt
    meeting = services.create_meeting(rt, tenant_id, transcription=True)
    url = stack.url(FLEURS_ROOM)
    late: list[int] = []

    async def scenario() -> None:
        await send_bot(rt, meeting.id, url)
        reader, track = await speaking(url, "reader", LEAD + pcm, SPEED)
        try:
            await until(lambda: hears(rt, meeting.id, "reader"), "the bot hearing the reader")
            await asyncio.wait_for(track.finished.wait(), track.duration / SPEED + 30)
            late.append(track.late)
        finally:
            await leave_all([reader])
        await recall_bot(rt, meeting.id)

    run(scenario())  # the worker transcribes live, as the reader speaks
    segments = drained(rt, meeting.id)
    assert {s.participant_id for s in segments} == {"reader"}
    wer = transcript_wer(segments, reference)
    print(
        f"fleurs-en through Janus at {SPEED:g}x real time: WER {wer:.3f} over "
        f"{len(reference)} words, {len(segments)} segments, {late[0]} late frames"
    )
    assert wer <= 0.085, f"WER {wer:.3f}"


# -- 5. bad joins ----------------------------------------------------------------------------


def test_bad_joins_fail_precisely_and_disturb_no_other_meeting(
    stack: MeetingStack, tenant_id: str
) -> None:
    rt = stack.rt
    good = services.create_meeting(rt, tenant_id, transcription=True)
    url = stack.url(CAPTURE_ROOM)
    unreachable_url = f"janus://{stack.ns.host_addr}:9/{OPEN_ROOM}"  # nothing listens there

    # Malformed URLs are refused up front, saying what is wrong; no bot is even asked for.
    for bad, words in (
        ("janus://10.0.0.1:8088/room-1", "the room must be a positive integer"),
        ("janus://10.0.0.1:99999/1234", "the port must be a number"),
        ("https://meet.example/1234", "must start with janus://"),
    ):
        meeting = services.create_meeting(rt, tenant_id)
        with pytest.raises(InvalidInput, match=words):
            join_meeting(rt, meeting.id, bad)
        with pytest.raises(NotFound):
            bot_status(rt, meeting.id)

    wrong_pin, no_room, unreachable = (services.create_meeting(rt, tenant_id) for _ in range(3))
    marks: dict[str, int] = {}

    async def scenario() -> dict[str, list[tuple[BotState, str]]]:
        audio = SealedAudio(rt, good)
        publishers = [(await speaking(url, "Gail", talk(40)))[0]]
        camera = Publisher(url, "Camera")  # a participant sending video and no audio
        publishers.append(camera)
        try:
            await camera.publish_video_only()
            await send_bot(rt, good.id, url)
            trails = {"good": StateTrail(rt, good.id).start()}
            await until(lambda: hears(rt, good.id, "Gail"), "the bot hearing Gail only")
            await until(lambda: bool(audio.of("Gail")), "Gail's first utterance stored")
            marks["bad_from"] = at_ms(good, time.time())
            for name, meeting, bad_url in (
                ("pin", wrong_pin, stack.url(PIN_ROOM, pin="wrong-pin-4711")),
                ("room", no_room, stack.url(999)),
                ("unreachable", unreachable, unreachable_url),
            ):
                join_meeting(rt, meeting.id, bad_url)
                trails[name] = StateTrail(rt, meeting.id).start()
            await until(
                lambda: all(
                    bot_status(rt, m.id).state.final for m in (wrong_pin, no_room, unreachable)
                ),
                "the three bad joins to end",
                timeout=30,
            )
            marks["bad_to"] = at_ms(good, time.time())
            # The good meeting's bot went on capturing all along, and still does.
            await until(
                lambda: any(s.start_ms >= marks["bad_to"] for s in audio.of("Gail")),
                "Gail's audio after the bad joins ended",
            )
            assert hears(rt, good.id, "Gail")
            during = [
                s for s in audio.of("Gail") if marks["bad_from"] <= s.start_ms < marks["bad_to"]
            ]
            assert during, "nothing of Gail stored while the bad joins ran"
        finally:
            await leave_all(publishers)
            for trail in trails.values():
                await trail.stop()
        await recall_bot(rt, good.id)
        return {name: trail.seen for name, trail in trails.items()}

    with paused(stack.worker):
        seen = run(scenario())
    for name, trail in seen.items():
        print(f"{name}: {trail}")
    assert [state for state, _ in seen["good"]] == [BotState.IN_MEETING]

    pin = bot_status(rt, wrong_pin.id)
    assert pin.state is BotState.FAILED
    assert pin.reason == f"Janus refused the pin for room {PIN_ROOM}"
    assert "wrong-pin-4711" not in json.dumps(seen["pin"])
    room = bot_status(rt, no_room.id)
    assert (room.state, room.reason) == (BotState.FAILED, "Janus room 999 does not exist")
    for name in ("pin", "room"):  # refused at once: never retried
        assert BotState.RECONNECTING not in [state for state, _ in seen[name]]
    gone = bot_status(rt, unreachable.id)
    assert gone.state is BotState.FAILED
    assert gone.reason == f"{UNREACHABLE} (gave up after 5 attempts)"
    assert BotState.RECONNECTING in [state for state, _ in seen["unreachable"]]
    drained(rt, good.id)


# -- 6. the CLI ------------------------------------------------------------------------------


def test_the_cli_sends_and_recalls_the_bot(stack: MeetingStack, tenant_id: str) -> None:
    rt = stack.rt
    meeting = services.create_meeting(rt, tenant_id)
    url = stack.url(CLI_ROOM)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    joined = cli("meeting", "join", meeting.id, url, "--wait", "20")
    assert joined.returncode == 0, joined.stderr
    assert (
        f"bot in janus://{stack.janus.host}:{stack.janus.port}/{CLI_ROOM}: in meeting"
        in joined.stdout
    ), joined.stdout
    assert bot_status(rt, meeting.id).state is BotState.IN_MEETING

    left = cli("meeting", "leave", meeting.id)
    assert left.returncode == 0, left.stderr
    deadline = time.monotonic() + 20
    while not bot_status(rt, meeting.id).state.final and time.monotonic() < deadline:
        time.sleep(0.1)
    shown = cli("meeting", "bot", meeting.id, "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["state"] == "left" and doc["reason"] == "called back", doc
