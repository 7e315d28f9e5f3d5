"""Guarantee 6: purge is real. Sealed audio is gone once transcribed; transcripts expire at
the tenant's retention (real time, shortened by configuration); deleting a meeting destroys
its data keys and retires the tenant key versions that wrapped them, so a Redis backup
taken before the delete cannot be opened afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from keys.errors import KeyUnavailable
from keys.types import KeyUse, Purpose
from pipeline import services
from pipeline.errors import NotFound
from pipeline.services.retention import purge_expired
from pipeline.store import schema
from pipeline.store.connection import as_str
from tests.harness.processes import wait_until
from tests.privacy.deployment import Api, Deployment
from tests.privacy.live import participant, settled, words
from tests.privacy.sampler import Sampler
from tests.privacy.speech import PHRASES, require_espeak


def _speak(api: Api, said: dict[str, str]) -> None:
    async def meeting() -> None:
        async def one(meeting_id: str, phrase: str) -> None:
            async with participant(api, meeting_id, "Alice") as alice:
                await alice.says(phrase)

        await asyncio.gather(*(one(m, p) for m, p in said.items()))

    asyncio.run(meeting())


def _keys_of(r: redis.Redis, meeting_id: str) -> list[bytes]:
    """Every key naming the meeting: what a backup of it holds."""
    return sorted(r.scan_iter(match=f"*{meeting_id}*"))


def test_audio_goes_when_transcribed_and_a_backup_dies_with_the_meeting(
    deployment: Deployment, sampler: Sampler
) -> None:
    require_espeak()
    a = deployment.tenant("a")
    api = deployment.api(a)
    r = deployment.redis()
    doomed, kept = api.meeting(), api.meeting()
    said = {doomed: PHRASES["Flintwick"], kept: PHRASES["Wimbledon"]}
    if deployment.local is not None:
        # Sealed audio can live for less than the sampler's interval once a worker is free:
        # held in the queue, it is there to be seen before anything deletes it.
        with deployment.local.workers_paused():
            _speak(api, said)
            wait_until(
                lambda: all(sampler.segments(m, "audio") for m in said),
                15,
                "the sampler to see each meeting's sealed audio",
            )
    else:
        _speak(api, said)
    settled(r, doomed)
    settled(r, kept)
    # Transcribed audio is deleted with the transcript's arrival: no sealed audio is left.
    assert not list(r.scan_iter(match=schema.audio(doomed, "*")))
    assert not list(r.scan_iter(match=schema.audio(kept, "*")))

    backup = {k: r.dump(k) for k in _keys_of(r, doomed)}  # an operator's backup
    assert (
        any(b"transcript" in k for k in backup) and schema.meeting_keys(doomed).encode() in backup
    )
    before = api.ok("GET", "/v1/keys")["primary_version"]
    assert api("DELETE", f"/v1/meetings/{doomed}").status_code == 204
    assert _keys_of(r, doomed) == []
    assert "wimbledon" in words(api.transcript(kept))  # the other meeting is untouched

    def retired() -> bool:  # a worker rotates the tenant key and retires the old versions
        # Before the worker starts, a tenant with one version also shows only its primary:
        # retired means a primary newer than the one that wrapped the backup's keys.
        status = api.ok("GET", "/v1/keys")
        primary = status["primary_version"]
        return bool(primary > before and status["versions"] == [primary])

    try:
        wait_until(retired, 30, "the old key versions to be retired", interval=0.2)
    except TimeoutError:
        raise AssertionError("old key versions survive the delete") from None

    try:  # restore the backup: wrapped keys, sealed transcript, meeting record
        for k, v in backup.items():
            assert v is not None
            r.restore(k, 0, v, replace=True)
        r.sadd(schema.tenant_meetings(a.id), doomed)
        got = api("GET", f"/v1/meetings/{doomed}/transcript")
        assert got.status_code == 503 and "flintwick" not in got.text.lower(), (
            f"a backup taken before the delete opened: {got.status_code}"
        )
        assert "retired" in got.json()["detail"]
        if deployment.local is not None:
            rt = deployment.local.rt
            with pytest.raises(KeyUnavailable, match="retired"):
                services.data_key(
                    rt, rt.store.meetings.get(doomed), KeyUse.TRANSCRIPT, Purpose.DELIVER
                )
    finally:
        for k in backup:
            r.delete(k)
        r.srem(schema.tenant_meetings(a.id), doomed)


def test_transcripts_expire_at_the_tenants_retention(
    deployment: Deployment, sampler: Sampler
) -> None:
    require_espeak()
    a = deployment.tenant("a")
    api = deployment.api(a)
    r = deployment.redis()
    before = api.ok("GET", "/v1/tenant")["retention"]
    api.ok("PUT", "/v1/tenant/retention", json={"transcript_ttl": 3})
    try:
        m = api.meeting()
        _speak(api, {m: PHRASES["Copperfield"]})
        settled(r, m, quiet=0.2)
        stored = [*r.scan_iter(match=schema.transcript(m, "*")), schema.meeting_captions(m)]
        # PTTL, not TTL: TTL rounds, and says 0 with half a second left on a slow machine
        assert all(0 < r.pttl(k) <= 3000 for k in stored), [r.pttl(k) for k in stored]
        wait_until(lambda: not r.exists(*stored), 6, "transcripts past retention expire")
        assert api.transcript(m) == ""
        if deployment.local is not None:  # the beat's purge then shreds the empty meeting
            assert purge_expired(deployment.local.rt).meetings_shredded >= 1
            with pytest.raises(NotFound):
                services.get_meeting(deployment.local.rt, m)
            assert _keys_of(r, m) == []
    finally:
        api.ok("PUT", "/v1/tenant/retention", json=before)


def test_interim_captions_go_when_their_final_lands(deployment: Deployment) -> None:
    """Interim captions are shown while someone speaks and are gone, text and caption
    stream entries, once the utterance's final transcript is stored; they never enter the
    transcript."""
    require_espeak()
    api = deployment.api(deployment.tenant("a"))
    r = deployment.redis()
    m = api.meeting(transcription=True)

    async def meeting() -> None:
        async with participant(api, m, "Alice") as alice:
            # three phrases in one breath: about six seconds of speech, several interims
            await alice.says(PHRASES["Flintwick"], PHRASES["Wimbledon"], PHRASES["Flintwick"])

    asyncio.run(meeting())
    settled(r, m, transcripts=1)
    wait_until(lambda: r.llen(schema.CELERY_INTERIM_QUEUE) == 0, 30, "the interim queue drained")
    counts = {as_str(k): int(v) for k, v in r.hgetall(schema.meeting_interims(m)).items()}
    assert counts.get("transcribed", 0) >= 1, f"no interim caption was made: {counts}"
    left = r.hgetall(schema.meeting_interim_text(m))
    assert not left, f"interim captions left after the final: {sorted(left)}"
    entries: Any = r.xrange(schema.meeting_captions(m))
    interim_entries = [e for e in entries if e[1].get(b"kind") == b"interim"]
    assert not interim_entries, f"{len(interim_entries)} interim stream entries left"
    assert entries, "the final is in the caption stream"
    assert not r.hgetall(schema.meeting_interim(m)), "interim audio left"
    said = words(api.transcript(m))
    assert "wimbledon" in said and "flintwick" in said, said
