"""WHIP ingest at the multi-tenant edge, against real ``sealscribe serve`` processes on
loopback with a private redis-server: a session receives one audio track however many it
offers (and however many the publisher sends), and WHIP sessions are capped per meeting and
per tenant across API processes.

Publishers are aiortc peer connections in this process (:mod:`bench.edge`); every address is
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from bench.edge import MultiTrackPublisher, answer_directions, rss_mib
from pipeline import faults, services
from pipeline.capture.ice import configure_ice, rtc_configuration
from pipeline.capture.whip import LEASE_SECONDS, RETRY_AFTER
from pipeline.config import Settings
from pipeline.net import free_port
from pipeline.publish import PcmTrack, WhipPublisher
from pipeline.runtime import Runtime
from tests.harness.processes import ApiProcess
from tests.harness.redis import RedisServer
from tests.harness.stack import T

pytestmark = pytest.mark.timeout(300)

#: half a second of a 440 Hz tone, 16 kHz mono: something to encode on every audio track
TONE = (8000 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)).astype("<i2").tobytes()


@dataclass
class Edge:
    redis: RedisServer
    apis: list[ApiProcess]
    rt: Runtime

    def tenant(self, name: str) -> T:
        tenant, token = services.create_tenant(self.rt, name)
        return T(tenant.id, token)

    def meeting(self, tenant: T) -> str:
        return services.create_meeting(self.rt, tenant.id).id


@contextlib.contextmanager
def edge(root: Path, apis: int = 1, **settings: str) -> Iterator[Edge]:
    """A private redis-server and ``apis`` ``sealscribe serve`` processes sharing it (and one
    home: the local keyring), with ``settings`` (and any injected fault) in their
    environment."""
    redis = RedisServer(root / "redis")
    redis.start(20)
    home = root / "home"
    home.mkdir(mode=0o700)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SEALSCRIBE_")},
        **{k: os.environ[k] for k in (faults.FAULTS_VAR, faults.ALLOW_VAR) if k in os.environ},
        "SEALSCRIBE_HOME": str(home),
        "SEALSCRIBE_REDIS_URL": redis.url,
        "SEALSCRIBE_KEY_PROVIDER": "local",
        "SEALSCRIBE_ICE_HOSTS": "127.0.0.1",
        "SEALSCRIBE_BOT_ALLOW": "127.0.0.1",  # the publishers' ICE candidates are loopback
        "PYTHONUNBUFFERED": "1",
        **settings,
    }
    started: list[ApiProcess] = []
    rt = None
    try:
        for i in range(apis):
            api = ApiProcess(free_port(), {**env, "TMPDIR": str(root)}, root / f"api{i}.log")
            started.append(api)
            api.start()
        rt = Runtime.from_settings(Settings.from_env(env), actor="test")
        configure_ice("127.0.0.1")
        yield Edge(redis, started, rt)
    finally:
        configure_ice("")
        if rt is not None:
            rt.store.redis.close()
        for api in started:
            api.stop()
        redis.stop()


def whip_url(api: ApiProcess, meeting_id: str) -> str:
    return f"{api.url}/v1/meetings/{meeting_id}/whip"


# -- one track per session -----------------------------------------------------------------


def test_extra_tracks_are_not_received(tmp_path: Path) -> None:
    """A publisher offers 4 audio + 2 video tracks and, ignoring the answer, sends on all
    of them: the API answers only the first audio section recvonly, runs no receiver for the
    others (it sends no receiver report about the video tracks, which a running receiver
    does about once a second) and its memory does not grow with what they carry."""
    with edge(tmp_path) as stack:
        tenant = stack.tenant("acme")
        meeting = stack.meeting(tenant)
        api = stack.apis[0]

        async def main() -> tuple[str, dict[str, int], dict[str, int], float]:
            pub = MultiTrackPublisher(
                whip_url(api, meeting), tenant.token, TONE * 120, audio=4, video=2
            )
            try:
                await pub.start()
                assert pub.status == 201, pub.answer
                await asyncio.sleep(3)  # up, codecs started
                rss0 = rss_mib(api.proc.pid)
                await asyncio.sleep(15)
                growth = rss_mib(api.proc.pid) - rss0
                return pub.answer, await pub.sent(), await pub.reported(), growth
            finally:
                await pub.stop()

        answer, sent, reported, growth = asyncio.run(main())
        api.check_alive()
    # the publisher did send video (else nothing below would mean anything)
    assert sent.get("video", 0) > 300 and sent.get("audio", 0) > 4 * 300, sent
    assert "video" not in reported, f"the API received the video tracks: {reported}"
    assert growth < 40, f"the API's memory grew {growth:.0f} MiB in 15 s"
    assert (
        answer_directions(answer)
        == [("audio", "recvonly")] + [("audio", "inactive")] * 3 + [("video", "inactive")] * 2
    )


def test_offer_with_too_many_media_sections_is_refused(tmp_path: Path) -> None:
    with edge(tmp_path) as stack:
        tenant = stack.tenant("acme")
        meeting = stack.meeting(tenant)

        async def main() -> tuple[int, str]:
            pub = MultiTrackPublisher(
                whip_url(stack.apis[0], meeting), tenant.token, TONE, audio=10, video=7
            )
            try:
                await pub.start()
                return pub.status, pub.answer
            finally:
                await pub.stop()

        status, body = asyncio.run(main())
    assert status == 400
    assert "has 17 media sections; at most 16" in body


# -- session caps ----------------------------------------------------------------------------


@dataclass
class Refusal:
    status: int
    retry_after: str | None
    content_type: str
    body: str


async def offer_refused(url: str, token: str) -> Refusal:
    """POST a fresh audio offer that is expected to be refused; what came back."""
    pc = RTCPeerConnection(rtc_configuration())
    pc.addTransceiver(PcmTrack(TONE), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url,
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
            ) as resp,
        ):
            body = await resp.text()
            if resp.status == 201:  # not refused: end the session it made
                location = resp.headers["Location"]
                async with http.delete(
                    f"{url.split('/v1/')[0]}{location}",
                    headers={"Authorization": f"Bearer {token}"},
                ):
                    pass
            return Refusal(
                resp.status,
                resp.headers.get("Retry-After"),
                resp.headers.get("Content-Type", ""),
                body,
            )
    finally:
        await pc.close()


def assert_quota(refusal: Refusal, setting: str) -> None:
    assert refusal.status == 429, refusal
    assert refusal.retry_after == str(RETRY_AFTER), refusal
    assert refusal.content_type.startswith("application/problem+json"), refusal
    assert '"status":429' in refusal.body.replace(" ", "") and setting in refusal.body, refusal


def test_whip_sessions_are_capped(tmp_path: Path) -> None:
    """Two API processes, 2 sessions per meeting and 3 per tenant: the caps hold whichever
    process answers, another tenant is not affected, an ended session frees its place at
    once, and the sessions of a process that died stop counting once their leases lapse."""
    with edge(
        tmp_path, apis=2, SEALSCRIBE_WHIP_PER_MEETING="2", SEALSCRIBE_WHIP_PER_TENANT="3"
    ) as stack:
        a, b = stack.apis
        acme, other = stack.tenant("acme"), stack.tenant("other")
        m1, m2, m3 = stack.meeting(acme), stack.meeting(acme), stack.meeting(other)

        async def publisher(api: ApiProcess, meeting: str, who: T, name: str) -> WhipPublisher:
            pub = WhipPublisher(whip_url(api, meeting), who.token, PcmTrack(TONE), name)
            await pub.start()
            return pub

        async def main() -> None:
            pubs: list[WhipPublisher] = []
            try:
                pubs.append(await publisher(a, m1, acme, "p1"))
                pubs.append(await publisher(b, m1, acme, "p2"))
                # the meeting is full, counted across both processes
                assert_quota(
                    await offer_refused(whip_url(a, m1), acme.token), "SEALSCRIBE_WHIP_PER_MEETING"
                )
                pubs.append(await publisher(b, m2, acme, "p3"))
                # the tenant is full: another of its meetings is refused too
                assert_quota(
                    await offer_refused(whip_url(a, m2), acme.token), "SEALSCRIBE_WHIP_PER_TENANT"
                )
                # another tenant is not affected
                pubs.append(await publisher(a, m3, other, "q1"))
                # an ended session frees its place at once
                await pubs.pop(0).stop()
                pubs.append(await publisher(a, m1, acme, "p4"))
                # process b dies holding p2 (m1) and p3 (m2): until their leases lapse they
                # still count, then they do not
                b.kill()
                assert_quota(
                    await offer_refused(whip_url(a, m2), acme.token), "SEALSCRIBE_WHIP_PER_TENANT"
                )
                deadline = time.monotonic() + LEASE_SECONDS + 15
                while True:
                    refusal = await offer_refused(whip_url(a, m2), acme.token)
                    if refusal.status == 201 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(1)
                assert refusal.status == 201, f"still refused {LEASE_SECONDS:g}+15 s later"
            finally:
                for pub in pubs:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(pub.stop(), 15)

        asyncio.run(main())
        a.check_alive()
