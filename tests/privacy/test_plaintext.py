"""Guarantee 1: no plaintext at rest or in transit inside the system, at any moment.

Two participants speak canary phrases into a live meeting over WebRTC; a sampler scans
Redis (Celery's queue and unacknowledged messages too), the home, log and temp directories
every half second while they speak, while the worker transcribes, while the transcript is
delivered, rotated and deleted. The canaries must be in the transcript the customer opens
(so they really were spoken and recognised) and in the live captions, and nowhere else.
"""

from __future__ import annotations

import asyncio
import base64
import json
from contextlib import nullcontext

import aiohttp
import pytest

from pipeline.processes import wait_until
from tests.harness.webhook_receiver import Receiver
from tests.privacy.deployment import Deployment
from tests.privacy.live import asettled, participant, words
from tests.privacy.sampler import Sampler
from tests.privacy.speech import CANARIES, PHRASES, require_espeak

STAGES = ("speaking", "transcribing", "delivering", "rotating", "deleting")


async def _captions(url: str, token: str, got: list[str], want: int) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws,
    ):
        finals = 0
        async for message in ws:
            caption = json.loads(message.data)
            got.append(caption["text"])  # interim captions too: the customer opens them
            finals += caption.get("kind") != "interim"
            if finals >= want:
                return


def test_spoken_canaries_are_nowhere_but_in_what_the_customer_opens(
    deployment: Deployment, sampler: Sampler
) -> None:
    require_espeak()
    a = deployment.tenant("a")
    api = deployment.api(a)
    r = deployment.redis()
    m = api.meeting(transcription=True)
    captions: list[str] = []
    held = deployment.local.workers_paused if deployment.local is not None else nullcontext
    # a webhook receiver for every event of the tenant (the suite's own stack allows
    # loopback; a deployment elsewhere could not reach this machine's receiver)
    hooks = Receiver().start() if deployment.local is not None else None
    if hooks is not None:
        api.ok("POST", "/v1/webhooks", json={"url": hooks.url})

    async def meeting() -> None:
        follow = asyncio.create_task(_captions(api.captions(m), a.token, captions, 2))
        sampler.mark("speaking")
        # Sealed audio can live for less than the sampler's interval once a worker is free:
        # held in the queue, it and its task are there to be seen before the workers go on.
        with held():
            async with participant(api, m, "Alice") as alice, participant(api, m, "Bob") as bob:
                await asyncio.gather(
                    alice.says(PHRASES["Flintwick"]), bob.says(PHRASES["Copperfield"])
                )
            if deployment.local is not None:
                await asyncio.to_thread(
                    wait_until,
                    lambda: {"audio", "queued"} <= {s.kind for s in sampler.segments(m)},
                    15,
                    "the sampler to see the sealed audio and its queued task",
                )
        sampler.mark("transcribing")
        await asettled(r, m, transcripts=2)
        await asyncio.wait_for(follow, 30)

    asyncio.run(meeting())
    sampler.mark("delivering")
    said = words(api.transcript(m))
    assert {"flintwick", "copperfield"} <= said, f"the canaries were not recognised: {said}"
    assert {"flintwick", "copperfield"} <= words(" ".join(captions)), captions
    for fmt in ("srt", "vtt", "json"):
        got = api("GET", f"/v1/meetings/{m}/transcript", params={"format": fmt})
        assert got.status_code == 200 and "flintwick" in got.text.lower(), fmt
    sampler.sample()  # and the background scans go on: at least one in every stage
    sampler.mark("rotating")
    api.ok("POST", "/v1/keys/rotate")
    sampler.sample()
    sampler.mark("deleting")
    assert api("DELETE", f"/v1/meetings/{m}").status_code == 204
    sampler.sample()
    if hooks is not None:  # what left for the customer's systems: ids and states only
        try:
            wait_until(
                lambda: any(b"meeting.deleted" in x.body for x in hooks.snapshot()),
                30,
                "the webhook of the delete",
            )
        finally:
            hooks.stop()
        sent = b"".join(x.body + repr(x.headers).encode() for x in hooks.snapshot())
        assert b"key.rotated" in sent and m.encode() in sent
        leaked = [c for c in CANARIES if c.lower().encode() in sent.lower()]
        assert not leaked, f"a webhook carried {leaked}"
    sampler.mark("done")
    sampler.stop()

    assert not sampler.found, sampler.report()
    missed = [s for s in STAGES if sampler.scans_during(s) < 1]
    assert not missed, f"no scan while {missed}: {sampler.report()}"
    # The sampler was looking while the sealed audio waited, while its task was queued or
    # unacknowledged, and once the sealed transcript existed: every stage was sampled.
    kinds = {s.kind for s in sampler.segments(m)}
    assert (
        {"audio", "queued", "transcript"}
        <= kinds
        <= {
            "audio",
            "queued",
            "transcript",
            "interim",  # an interim caption's sealed audio, when a phrase ran long enough
        }
    ), kinds
    assert {s.participant for s in sampler.segments(m)} == {"Alice", "Bob"}


def test_the_sampler_finds_a_planted_canary(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The positive control: the same scan finds the canary where a leak would put it."""
    r = deployment.redis()
    planted = "sealscribe-privacy-suite:planted"
    body = base64.b64encode(json.dumps([["m_0", "The Flintwick protocol"], {}, {}]).encode())
    message = json.dumps(
        {
            "body": body.decode(),
            "headers": {"task": "sealscribe.transcribe"},
            "properties": {"body_encoding": "base64"},
        }
    )
    r.rpush(planted, message)
    files = []
    for d in deployment.scan_dirs[:1] or [tmp_path_factory.mktemp("planted")]:
        leak = d / "planted-leak.txt"
        leak.write_bytes("transcript: THE FLINTWICK PROTOCOL".encode("utf-16-le"))
        files.append(leak)
    dirs = deployment.scan_dirs or [f.parent for f in files]
    try:
        found = Sampler(deployment.redis_url, ("Flintwick",), dirs).sample()
    finally:
        r.delete(planted)
        for leak in files:
            leak.unlink()
    assert {(f.where, f.name) for f in found} == {
        ("redis", planted),
        *(("file", str(f)) for f in files),
    }
