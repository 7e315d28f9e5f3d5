"""WHIP ingest through the real API on loopback: an aiortc publisher sends Opus over real
WebRTC, the API seals each utterance at capture, and the policy (switch, opt-out) is obeyed
at the edge. Transcription by a real worker is covered in test_live.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from keys.types import KeyUse, Purpose
from pipeline import services
from pipeline.audio.decode import decode_file
from pipeline.datakeys import ParticipantKeys
from pipeline.publish import PcmTrack, WhipPublisher
from pipeline.queue import use_broker
from pipeline.runtime import Runtime
from pipeline.sealing import open_audio
from tests.conftest import TEST_REDIS_URL
from tests.harness.api import serve_api
from tests.harness.processes import broker_for

JFK = Path(__file__).resolve().parents[2] / "pipeline" / "demo_data" / "jfk.ogg"


@pytest.fixture(autouse=True)
def test_broker(loopback_ice: None) -> None:
    use_broker(broker_for(TEST_REDIS_URL))  # (the test database, or the suite's broker)


@pytest.fixture
def tenant(rt: Runtime) -> tuple[str, str]:
    t, token = services.create_tenant(rt, "acme")
    return t.id, token


def pcm(path: Path) -> bytes:
    return decode_file(path, max_seconds=600)


def stored(rt: Runtime, meeting_id: str) -> list[str]:
    return rt.store.segments.pending_audio(meeting_id)


async def publish(
    base: str, token: str, meeting_id: str, audio: bytes, name: str, speed: float = 1.0
) -> PcmTrack:
    track = PcmTrack(audio, speed=speed)
    pub = WhipPublisher(f"{base}/v1/meetings/{meeting_id}/whip", token, track, name)
    await pub.start()
    await asyncio.wait_for(track.finished.wait(), track.duration / speed + 30)
    await pub.stop()
    return track


def test_whip_seals_each_utterance_at_capture(rt: Runtime, tenant: tuple[str, str]) -> None:
    tenant_id, token = tenant
    meeting = services.create_meeting(rt, tenant_id, transcription=True)
    audio = pcm(JFK)

    async def main() -> None:
        async with serve_api(rt) as base:
            await publish(base, token, meeting.id, audio, "Alice Example")
            # the API stored what it sealed before the session ended
            deadline = time.monotonic() + 10
            while not stored(rt, meeting.id) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)

    asyncio.run(main())
    sids = stored(rt, meeting.id)
    assert sids and all(s.startswith("Alice Example.") for s in sids)
    key = services.data_key(rt, meeting, KeyUse.AUDIO, Purpose.TRANSCRIBE, "Alice Example")
    total = 0
    for sid in sids:
        sealed = rt.store.segments.get_audio(meeting.id, sid)
        assert sealed is not None
        assert b"RIFF" not in sealed.sealed
        segment = open_audio(key, tenant_id, sealed)
        assert segment.sample_rate == 16000
        total += len(segment.pcm)
    # the speech of the clip (about 11 s, with pauses) made it through Opus into segments
    assert 6 * 32000 < total < 14 * 32000


def test_off_means_nothing_is_stored(rt: Runtime, tenant: tuple[str, str]) -> None:
    tenant_id, token = tenant
    meeting = services.create_meeting(rt, tenant_id)  # off by default
    audio = pcm(JFK)[: 5 * 32000]

    async def main() -> None:
        async with serve_api(rt) as base:
            await publish(base, token, meeting.id, audio, "bob", speed=2)

    asyncio.run(main())
    assert stored(rt, meeting.id) == []
    assert not list(rt.store.redis.scan_iter(b"ss:audio:*"))  # (every node of a cluster)


def test_opted_out_participant_is_never_stored(rt: Runtime, tenant: tuple[str, str]) -> None:
    tenant_id, token = tenant
    meeting = services.create_meeting(rt, tenant_id, transcription=True)
    services.set_consent(rt, meeting.id, "carol", opted_out=True)
    audio = pcm(JFK)[: 6 * 32000]

    async def main() -> None:
        async with serve_api(rt) as base:
            await asyncio.gather(
                publish(base, token, meeting.id, audio, "carol", speed=2),
                publish(base, token, meeting.id, audio, "dave", speed=2),
            )

    asyncio.run(main())
    sids = stored(rt, meeting.id)
    assert sids and {s.rpartition(".")[0] for s in sids} == {"dave"}


def test_switching_off_mid_call_takes_effect_within_a_second(
    rt: Runtime, tenant: tuple[str, str]
) -> None:
    tenant_id, token = tenant
    meeting = services.create_meeting(rt, tenant_id, transcription=True)
    audio = (pcm(JFK) + bytes(2 * 32000)) * 3  # 11 s of speech, 2 s of silence, thrice

    async def main() -> float:
        async with serve_api(rt) as base:
            track = PcmTrack(audio)
            pub = WhipPublisher(f"{base}/v1/meetings/{meeting.id}/whip", token, track, "eve")
            await pub.start()
            await asyncio.sleep(16)  # mid-way through the second time round
            off_at = time.time()
            await asyncio.to_thread(services.set_transcription, rt, meeting.id, False)
            await asyncio.sleep(6)
            await pub.stop()
            return off_at

    off_at = asyncio.run(main())
    off_ms = int((off_at - meeting.created) * 1000)
    keys = ParticipantKeys(rt, meeting, KeyUse.AUDIO, Purpose.TRANSCRIBE)
    sids = stored(rt, meeting.id)
    assert sids, "speech before the switch was captured"
    for sid in sids:
        sealed = rt.store.segments.get_audio(meeting.id, sid)
        assert sealed is not None
        seg = open_audio(keys(sealed.participant_id), tenant_id, sealed)
        end_ms = seg.start_ms + len(seg.pcm) // 32
        assert end_ms <= off_ms + 1000, f"audio {end_ms - off_ms} ms after the switch"


@pytest.mark.parametrize(
    ("body", "ctype", "status", "words"),
    [
        ("hello", "application/sdp", 400, "start with v=0"),
        (
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
            "application/sdp",
            400,
            "no audio",
        ),
        ("v=0\r\n" + "a=x\r\n" * 40000, "application/sdp", 413, "larger than"),
        ('{"sdp": "v=0"}', "application/json", 415, "application/sdp"),
        (
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n",
            "application/sdp",
            400,
            "refused",
        ),
    ],
)
def test_bad_offers_get_precise_errors(
    rt: Runtime, tenant: tuple[str, str], body: str, ctype: str, status: int, words: str
) -> None:
    tenant_id, token = tenant
    meeting = services.create_meeting(rt, tenant_id, transcription=True)

    async def main() -> tuple[int, dict[str, object]]:
        async with (
            serve_api(rt) as base,
            aiohttp.ClientSession() as http,
            http.post(
                f"{base}/v1/meetings/{meeting.id}/whip",
                data=body,
                headers={"Content-Type": ctype, "Authorization": f"Bearer {token}"},
            ) as resp,
        ):
            assert resp.headers["Content-Type"] == "application/problem+json"
            return resp.status, await resp.json()

    got, doc = asyncio.run(main())
    assert got == status
    assert words in str(doc["detail"])


def test_whip_auth_and_resources(rt: Runtime, tenant: tuple[str, str]) -> None:
    tenant_id, token = tenant
    meeting = services.create_meeting(rt, tenant_id, transcription=True)
    _, other_token = services.create_tenant(rt, "other")
    audio = pcm(JFK)[: 3 * 32000]

    async def main() -> None:
        async with serve_api(rt) as base, aiohttp.ClientSession() as http:
            url = f"{base}/v1/meetings/{meeting.id}/whip"
            sdp_headers = {"Content-Type": "application/sdp"}
            async with http.post(url, data="v=0\r\n", headers=sdp_headers) as r:
                assert r.status == 401
            async with http.post(
                url,
                data="v=0\r\n",
                headers={**sdp_headers, "Authorization": f"Bearer {other_token}"},
            ) as r:
                assert r.status == 404  # another tenant's meeting does not exist for them
            pub = WhipPublisher(url, token, PcmTrack(audio), "frank")
            await pub.start()
            assert pub.resource is not None
            resource = pub.resource
            async with http.patch(resource, headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 405
            async with http.delete(
                resource, headers={"Authorization": f"Bearer {other_token}"}
            ) as r:
                assert r.status == 404
            await pub.stop()
            async with http.delete(resource, headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 404  # already ended

    asyncio.run(main())
