"""Live meetings end to end on loopback: WHIP publishers -> capture (sealed) -> Redis -> a
real worker with tiny.en -> transcript attributed to each participant; and the accuracy of
the whole WebRTC path (Opus on the wire) on fleurs-en."""

from __future__ import annotations

import asyncio

import pytest

from bench.wer import normalise, word_errors
from pipeline import services
from pipeline.audio.decode import decode_file
from pipeline.config import Settings
from pipeline.publish import PcmTrack, WhipPublisher
from pipeline.runtime import Runtime
from pipeline.services.transcripts import read_transcript
from tests.conftest import shared_data
from tests.harness.api import serve_api
from tests.harness.processes import WorkerProcess, wait_until
from tests.integration.fleurs import fleurs_concatenation, transcript_wer

# Real-time WebRTC publishing, then transcription: each waits up to 300 s.
pytestmark = [pytest.mark.usefixtures("loopback_ice"), pytest.mark.timeout(660)]


@pytest.fixture
def rt(env: dict[str, str]) -> Runtime:
    return Runtime.from_settings(Settings.from_env(env), actor="test")


async def publish_all(
    rt: Runtime, token: str, meeting_id: str, streams: dict[str, bytes], speed: float
) -> None:
    async with serve_api(rt) as base:
        pubs = []
        for name, pcm in streams.items():
            pub = WhipPublisher(
                f"{base}/v1/meetings/{meeting_id}/whip", token, PcmTrack(pcm, speed=speed), name
            )
            await pub.start()
            pubs.append(pub)
        for pub in pubs:
            assert isinstance(pub.track, PcmTrack)
            await asyncio.wait_for(pub.track.finished.wait(), 300)
        for pub in pubs:
            await pub.stop()


def transcribed(rt: Runtime, meeting_id: str, timeout: float = 300) -> None:
    def done() -> bool:
        return (
            rt.store.segments.pending_count(meeting_id) == 0
            and rt.store.segments.transcript_count(meeting_id) > 0
        )

    wait_until(done, timeout, "the meeting transcribed", interval=0.2)


def test_fleurs_through_whip_keeps_accuracy(rt: Runtime, worker: WorkerProcess) -> None:
    pcm, reference = fleurs_concatenation()
    tenant, token = services.create_tenant(rt, "acme")
    meeting = services.create_meeting(rt, tenant.id, transcription=True)
    asyncio.run(publish_all(rt, token, meeting.id, {"reader": pcm}, speed=2.0))
    transcribed(rt, meeting.id)
    segments = read_transcript(rt, meeting.id)
    assert {s.participant_id for s in segments} == {"reader"}
    wer = transcript_wer(segments, reference)
    print(
        f"fleurs-en through WHIP: WER {wer:.3f} over {len(reference)} words, "
        f"{len(segments)} segments"
    )
    assert wer <= 0.085, f"WER {wer:.3f}"


def test_each_participant_is_transcribed_under_their_name(
    rt: Runtime, worker: WorkerProcess
) -> None:
    clips = sorted(shared_data("fleurs-en").glob("*.ogg"))
    tenant, token = services.create_tenant(rt, "acme")
    meeting = services.create_meeting(rt, tenant.id, transcription=True)
    streams = {"Ana": decode_file(clips[3], 60), "Ben": decode_file(clips[4], 60)}
    asyncio.run(publish_all(rt, token, meeting.id, streams, speed=1.0))
    transcribed(rt, meeting.id)
    by_name: dict[str, list[str]] = {}
    for s in read_transcript(rt, meeting.id):
        by_name.setdefault(s.participant_id, []).extend(normalise(s.text))
    assert set(by_name) == {"Ana", "Ben"}
    for name, clip in (("Ana", clips[3]), ("Ben", clips[4])):
        ref = normalise(clip.with_suffix(".txt").read_text())
        assert word_errors(ref, by_name[name]) / len(ref) < 0.3, name
