"""Participants decide for themselves. In an ``opt-in`` meeting nobody's audio is kept until
that participant consents (here through their own consent link), even while others are
transcribed; a participant's link speaks for that participant alone."""

from __future__ import annotations

import asyncio

import httpx

from pipeline.store import schema
from pipeline.store.connection import as_str
from tests.privacy.deployment import Deployment
from tests.privacy.live import participant, settled, words
from tests.privacy.sampler import Sampler
from tests.privacy.speech import PHRASES, require_espeak


def test_in_an_opt_in_meeting_nobody_is_kept_until_they_consent(
    deployment: Deployment, sampler: Sampler
) -> None:
    require_espeak()
    a = deployment.tenant("a")
    api = deployment.api(a)
    r = deployment.redis()
    made = api.ok("POST", "/v1/meetings", json={"transcription": True, "consent_mode": "opt-in"})
    m = made["id"]
    assert made["consent_mode"] == "opt-in"
    link = api.ok("POST", f"/v1/meetings/{m}/participants/Alice/link", json={})
    assert link["participant"] == "Alice"
    # Alice consents on her own page (no API token); Bob never does.
    chosen = httpx.post(link["url"], data={"choice": "optin"}, timeout=30)
    assert chosen.status_code == 200 and "you will be transcribed" in chosen.text

    async def meeting() -> None:
        async with participant(api, m, "Alice") as alice, participant(api, m, "Bob") as bob:
            await asyncio.gather(alice.says(PHRASES["Flintwick"]), bob.says(PHRASES["Kensington"]))
            await asyncio.sleep(0.5)
            await bob.says(PHRASES["Pemberton"])  # alone: still nothing of his is kept

    asyncio.run(meeting())
    settled(r, m)
    heard = words(api.transcript(m))
    assert "flintwick" in heard, heard
    assert not heard & {"kensington", "pemberton"}, heard
    seen = sampler.segments(m)
    assert seen and {s.participant for s in seen} == {"Alice"}, (
        f"stored or queued for a participant who never consented: {seen}"
    )
    # Bob left nothing: no data keys were even made for him, no manifest records.
    slots = {as_str(k) for k in r.hkeys(schema.meeting_keys(m))}
    assert {"audio:Alice", "transcript:Alice"} <= slots and not any("Bob" in s for s in slots)
    assert not [f for f in r.hkeys(schema.meeting_manifest(m)) if b"Bob" in f]
    report = api.ok("GET", f"/v1/meetings/{m}/privacy")
    changes = [(what, who.split("@")[0]) for _, what, who in report["consent_changes"]]
    assert changes == [("Alice:opted-in", "participant-link")], report
    assert report["purged"] == {}, "nothing of Bob's ever reached a worker"
