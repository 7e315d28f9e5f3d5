"""Guarantees 4 and 5: rotation is cheap and complete (every data key rewrapped, no content
re-encrypted, retiring old versions leaves everything readable), and revocation is a kill
switch (nothing opens afterwards, workers fail closed, queued work is purged)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from keys.errors import KeyRevoked, KeyUnavailable
from keys.types import KeyContext, KeyUse, Purpose
from pipeline import services
from pipeline.publish import WhipPublisher
from pipeline.store import schema
from tests.harness.processes import wait_until
from tests.privacy.deployment import Api, Deployment
from tests.privacy.live import counts, participant, settled, words
from tests.privacy.sampler import Sampler
from tests.privacy.speech import PHRASES, Speaker, require_espeak


def _speak(api: Api, meeting_id: str, phrase: str) -> None:
    async def meeting() -> None:
        async with participant(api, meeting_id, "Alice") as alice:
            await alice.says(phrase)

    asyncio.run(meeting())


def test_rotation_rewraps_every_data_key_and_retiring_keeps_content(
    deployment: Deployment, sampler: Sampler
) -> None:
    require_espeak()
    api = deployment.api(deployment.tenant("a"))
    r = deployment.redis()
    m = api.meeting()
    api.meeting(transcription=False)  # a meeting with nothing in it has keys too
    _speak(api, m, PHRASES["Flintwick"])
    settled(r, m, transcripts=1)
    before = api.ok("GET", "/v1/keys")
    version, keys = before["primary_version"], sum(before["wrapped_by_version"].values())
    sealed = {k: r.get(k) for k in r.scan_iter(match=schema.transcript(m, "*"))}
    audited = len(api.audit())

    rotated = api.ok("POST", "/v1/keys/rotate")
    assert rotated == {"primary_version": version + 1, "rewrapped": keys}
    status = api.ok("GET", "/v1/keys")
    assert status["wrapped_by_version"] == {str(version + 1): keys}, status
    retired = api.ok("POST", "/v1/keys/retire", json={"below": version + 1})
    assert retired["min_version"] == version + 1 and retired["rewrapped"] == 0
    assert api.ok("GET", "/v1/keys")["versions"] == [version + 1]

    assert {k: r.get(k) for k in sealed} == sealed, "content was re-encrypted"
    assert "flintwick" in words(api.transcript(m)), "content unreadable after retiring"
    new = api.audit()[audited:]
    rewraps = [e for e in new if e["action"] == "rewrap"]
    assert len(rewraps) == keys and {e["purpose"] for e in rewraps} == {"rewrap"}
    assert all(e["outcome"] == "ok" and e["key_version"] == version + 1 for e in rewraps)


async def _captions_close_code(api: Api, meeting_id: str) -> int | None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            api.captions(meeting_id), headers={"Authorization": f"Bearer {api.token}"}
        ) as ws,
    ):
        await ws.receive(timeout=10)
        return ws.close_code


async def _publish_refused(api: Api, meeting_id: str) -> str:
    assert api.token is not None
    publisher = WhipPublisher(api.whip(meeting_id), api.token, Speaker(), "Alice")
    try:
        await publisher.start()
    except Exception as exc:
        return str(exc)
    await publisher.stop()
    return ""


def test_revocation_is_a_kill_switch(deployment: Deployment, sampler: Sampler) -> None:
    require_espeak()
    t = deployment.tenant("revoke")
    api = deployment.api(t)
    r = deployment.redis()
    m = api.meeting()
    _speak(api, m, PHRASES["Flintwick"])  # the worker now holds this meeting's data keys
    done = settled(r, m, transcripts=1)[1]
    queued = 0
    revoke = {"confirm": f"revoke {t.id}"}
    if deployment.local is not None:
        with deployment.local.workers_paused():
            _speak(api, m, PHRASES["Copperfield"])
            wait_until(lambda: counts(r, m)[0] >= 1, 15, "sealed audio stored")
            queued = settled(r, m, transcripts=done, pending=counts(r, m)[0])[0]
            assert api.ok("POST", "/v1/keys/revoke", json=revoke)["revoked"] is True
    else:
        assert api.ok("POST", "/v1/keys/revoke", json=revoke)["revoked"] is True

    # Workers fail closed: what was queued is purged, untranscribed, without opening a key.
    assert settled(r, m, transcripts=done) == (0, done), "queued work was transcribed"
    entries = api.audit()
    after = entries[next(i for i, e in enumerate(entries) if e["action"] == "revoke") :]
    assert [e["outcome"] for e in after if e["action"] == "purge"] == ["key-revoked"] * queued
    assert not [e for e in after if e["action"] == "unwrap" and e["outcome"] == "ok"], after

    # Nothing of the tenant opens, or can be captured, any more.
    got = api("GET", f"/v1/meetings/{m}/transcript")
    assert got.status_code == 403 and "flintwick" not in got.text.lower()
    assert api("POST", "/v1/meetings", json={}).status_code == 403
    assert api("GET", "/v1/tenant/export").status_code == 403
    assert asyncio.run(_captions_close_code(api, m)) == 4403
    assert "403" in asyncio.run(_publish_refused(api, m))
    if deployment.local is not None:
        rt = deployment.local.rt
        meeting = rt.store.meetings.get(m)
        with pytest.raises(KeyRevoked):
            services.data_key(rt, meeting, KeyUse.TRANSCRIPT, Purpose.DELIVER)
        wrapped = rt.store.meetings.wrapped_key(m, KeyUse.TRANSCRIPT)
        with pytest.raises(KeyUnavailable):  # the key itself is gone, not just refused
            rt.keys.provider.unwrap(
                t.id, wrapped, KeyContext(t.id, m, KeyUse.TRANSCRIPT), Purpose.DELIVER
            )
