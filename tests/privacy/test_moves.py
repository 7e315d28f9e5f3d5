"""Guarantee 3: only the customer's key opens content. A sealed segment copied to another
participant, position, meeting or tenant fails authentication wherever it is opened: the
worker purges it (as ``failed-authentication``) instead of transcribing it, the API will
not deliver it, and a wrapped data key does not unwrap under another tenant's or meeting's
context."""

from __future__ import annotations

import asyncio

import pytest

from keys.errors import InvalidSeal
from keys.types import KeyContext, KeyUse, Purpose
from pipeline import services
from pipeline.models import SealedSegment, parse_segment_id, segment_id
from pipeline.queue import enqueue_transcribe
from pipeline.sealing import open_audio
from pipeline.store import schema
from pipeline.store.connection import as_str
from tests.harness.processes import wait_until
from tests.privacy.deployment import Api, Deployment
from tests.privacy.live import counts, participant, settled, words
from tests.privacy.sampler import Sampler
from tests.privacy.speech import PHRASES, require_espeak


def _speak(api: Api, meeting_id: str, phrase: str) -> None:
    async def meeting() -> None:
        async with participant(api, meeting_id, "Alice") as alice:
            await alice.says(phrase)

    asyncio.run(meeting())


def test_moved_audio_fails_authentication_and_is_purged(
    deployment: Deployment, sampler: Sampler
) -> None:
    require_espeak()
    local = deployment.need_local("pausing the workers, keys in this process")
    rt = local.rt
    a, b = deployment.tenant("a"), deployment.tenant("b")
    api_a, api_b = deployment.api(a), deployment.api(b)
    r = deployment.redis()
    m1, m2, m3 = api_a.meeting(), api_a.meeting(), api_b.meeting()

    with local.workers_paused():
        _speak(api_a, m1, PHRASES["Flintwick"])
        wait_until(lambda: counts(r, m1)[0] >= 1, 15, "sealed audio stored")
        settled(r, m1, transcripts=0, pending=counts(r, m1)[0])
        sid = rt.store.segments.pending_audio(m1)[0]
        original = rt.store.segments.get_audio(m1, sid)
        assert original is not None
        who, seq = parse_segment_id(sid)
        moves = {
            "another participant": (a.id, m1, "Mallory", seq),
            "another position": (a.id, m1, who, seq + 1),
            "another meeting": (a.id, m2, who, seq),
            "another tenant": (b.id, m3, who, seq),
        }
        for where, (tenant_id, meeting_id, p, s) in moves.items():
            moved = SealedSegment(meeting_id, p, s, original.sealed)
            key = services.data_key(
                rt, rt.store.meetings.get(meeting_id), KeyUse.AUDIO, Purpose.TRANSCRIBE
            )
            with pytest.raises(InvalidSeal):
                open_audio(key, tenant_id, moved)
                pytest.fail(f"a segment moved to {where} opened")
            enqueue_transcribe(meeting_id, rt.store.segments.put_audio(moved))
        # The data key does not move either: A's wrapped key under another context.
        wrapped = rt.store.meetings.wrapped_key(m1, KeyUse.AUDIO)
        for context in (
            KeyContext(b.id, m1, KeyUse.AUDIO),
            KeyContext(a.id, m2, KeyUse.AUDIO),
            KeyContext(a.id, m1, KeyUse.TRANSCRIPT),
        ):
            with pytest.raises(InvalidSeal):
                rt.keys.provider.unwrap(context.tenant_id, wrapped, context, Purpose.DELIVER)

    settled(r, m1, transcripts=1)
    assert settled(r, m2, transcripts=0) == (0, 0)
    assert settled(r, m3, transcripts=0) == (0, 0)
    done = [as_str(s) for s in r.zrange(schema.meeting_transcript(m1), 0, -1)]
    assert segment_id("Mallory", seq) not in done and segment_id(who, seq + 1) not in done
    assert "flintwick" in words(api_a.transcript(m1))
    assert api_a.transcript(m2) == "" and api_b.transcript(m3) == ""
    purged = [
        (e["meeting"], e["outcome"])
        for api in (api_a, api_b)
        for e in api.audit()
        if e["action"] == "purge"
    ]
    assert sorted(purged) == sorted(
        [(m1, "failed-authentication")] * 2
        + [(m2, "failed-authentication"), (m3, "failed-authentication")]
    )


def test_moved_transcripts_are_not_delivered(deployment: Deployment, sampler: Sampler) -> None:
    require_espeak()
    a, b = deployment.tenant("a"), deployment.tenant("b")
    api_a, api_b = deployment.api(a), deployment.api(b)
    r = deployment.redis()
    m1, m2, m3 = api_a.meeting(), api_a.meeting(), api_b.meeting()
    _speak(api_a, m1, PHRASES["Flintwick"])
    settled(r, m1, transcripts=1)
    sid = as_str(r.zrange(schema.meeting_transcript(m1), 0, 0)[0])
    start = r.zscore(schema.meeting_transcript(m1), sid)
    assert start is not None
    who, seq = parse_segment_id(sid)
    blob = r.get(schema.transcript(m1, sid))
    assert blob is not None
    moves = {
        "another participant": (api_a, m1, segment_id("Mallory", seq)),
        "another position": (api_a, m1, segment_id(who, seq + 1)),
        "another meeting": (api_a, m2, sid),
        "another tenant": (api_b, m3, sid),
    }
    for where, (api, meeting_id, new_sid) in moves.items():
        r.set(schema.transcript(meeting_id, new_sid), blob)
        r.zadd(schema.meeting_transcript(meeting_id), {new_sid: start})
        try:
            got = api("GET", f"/v1/meetings/{meeting_id}/transcript")
        finally:
            r.delete(schema.transcript(meeting_id, new_sid))
            r.zrem(schema.meeting_transcript(meeting_id), new_sid)
        assert got.status_code >= 400, f"a transcript moved to {where} was delivered"
        assert "flintwick" not in got.text.lower()
    assert "flintwick" in words(api_a.transcript(m1))  # the original still opens
