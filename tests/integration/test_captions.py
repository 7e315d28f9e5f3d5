"""Following a meeting's captions (:func:`pipeline.services.captions.follow_captions`) with
interim captions, against a private redis-server and the real store and sealing: an interim
is delivered while its participant's slot still shows it, skipped once a newer interim or the
final replaced it, never delivered twice by a resume, and the cursor moves over every entry.
Interims and finals are sealed with the meeting's transcript key as a worker seals them. And
the privacy report's interim counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keys.types import KeyUse, Purpose
from pipeline import services
from pipeline.api.app import create_app
from pipeline.config import Settings
from pipeline.models import Meeting, SealedSegment, TranscriptSegment
from pipeline.runtime import Runtime
from pipeline.sealing import seal_interim_transcript, seal_transcript
from pipeline.services.captions import Caption, follow_captions
from pipeline.services.privacy import INTERIMS_NOTE, privacy_report
from pipeline.services.tokens import create_token
from pipeline.store import schema
from pipeline.store.segments import CAPTION_HISTORY
from tests.harness.redis import RedisServer


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start(20)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def rt(redis_url: str, tmp_path: Path) -> Runtime:
    settings = Settings.from_env(
        {
            "SEALSCRIBE_HOME": str(tmp_path / "home"),
            "SEALSCRIBE_REDIS_URL": redis_url,
            "SEALSCRIBE_KEY_PROVIDER": "local",
        }
    )
    return Runtime.from_settings(settings, actor="test")


@pytest.fixture
def meeting(rt: Runtime) -> Meeting:
    tenant, _ = services.create_tenant(rt, "acme")
    m = services.create_meeting(rt, tenant.id)
    services.set_transcription(rt, m.id, True)
    return rt.store.meetings.get(m.id)


def show_interim(rt: Runtime, m: Meeting, who: str, seq: int, part: int, text: str) -> bool:
    """What a worker does with an interim's text: seal it, and show it in the slot."""
    key = services.data_key(rt, m, KeyUse.TRANSCRIPT, Purpose.TRANSCRIBE)
    segment = TranscriptSegment(who, seq, seq * 4000, seq * 4000 + part * 1000, text, part=part)
    sealed = seal_interim_transcript(key, m.tenant_id, m.id, segment)
    return rt.store.interims.put_text(sealed, part, CAPTION_HISTORY)


def store_final(rt: Runtime, m: Meeting, who: str, seq: int, text: str) -> None:
    """What a worker's ``_finish`` does: seal the transcript and complete the segment."""
    key = services.data_key(rt, m, KeyUse.TRANSCRIPT, Purpose.TRANSCRIBE)
    segment = TranscriptSegment(who, seq, seq * 4000, seq * 4000 + 3000, text, language="en")
    rt.store.segments.complete(seal_transcript(key, m.tenant_id, m.id, segment), segment.start_ms)


async def take(feed: AsyncGenerator[Caption, None], n: int) -> list[Caption]:
    return [await asyncio.wait_for(anext(feed), 15) for _ in range(n)]


def shown(captions: list[Caption]) -> list[tuple[str, str, int, str]]:
    return [(c.kind, c.utterance, c.segment.part, c.segment.text) for c in captions]


def test_interims_then_the_final_of_an_utterance_live(rt: Runtime, meeting: Meeting) -> None:
    async def go() -> list[Caption]:
        feed = follow_captions(rt, meeting, "0")
        try:
            got: list[Caption] = []
            assert show_interim(rt, meeting, "alice", 0, 1, "so")
            got += await take(feed, 1)
            assert show_interim(rt, meeting, "alice", 0, 2, "so what we")
            got += await take(feed, 1)
            store_final(rt, meeting, "alice", 0, "So what we need is this.")
            got += await take(feed, 1)
            return got
        finally:
            await feed.aclose()

    got = asyncio.run(go())
    assert shown(got) == [
        ("interim", "alice.0", 1, "so"),
        ("interim", "alice.0", 2, "so what we"),
        ("final", "alice.0", 0, "So what we need is this."),
    ]
    assert got[1].to_dict()["part"] == 2 and "part" not in got[2].to_dict()
    cursors = [c.cursor for c in got]
    assert len(set(cursors)) == 3 and cursors == sorted(cursors, key=_entry_order)
    # the final took the utterance's interim text and its stream entries with it
    assert rt.store.interims.get_text(meeting.id, "alice") is None
    assert rt.store.redis.xlen(schema.meeting_captions(meeting.id)) == 1


def _entry_order(cursor: str) -> tuple[int, int]:
    ms, n = cursor.split("-")
    return int(ms), int(n)


def test_only_the_interim_a_slot_still_shows_is_delivered(
    rt: Runtime, meeting: Meeting, monkeypatch: pytest.MonkeyPatch
) -> None:
    # three interims of alice's utterance and two of bob's; carol moves on to her next
    # utterance after one interim (the store drops the earlier utterance's entries)
    for part, text in enumerate(["a", "a b", "a b c"], 1):
        assert show_interim(rt, meeting, "alice", 0, part, text)
    for part, text in enumerate(["x", "x y"], 1):
        assert show_interim(rt, meeting, "bob", 5, part, text)
    assert show_interim(rt, meeting, "carol", 1, 1, "old")
    assert show_interim(rt, meeting, "carol", 2, 1, "new")
    assert not show_interim(rt, meeting, "alice", 0, 2, "stale")  # older than shown
    reads: list[list[str]] = []
    get_texts = rt.store.interims.get_texts

    def counted(
        meeting_id: str, participant_ids: list[str]
    ) -> dict[str, tuple[int, SealedSegment]]:
        reads.append(sorted(participant_ids))
        return get_texts(meeting_id, participant_ids)

    monkeypatch.setattr(rt.store.interims, "get_texts", counted)  # a spy: the real read

    async def go() -> list[Caption]:
        feed = follow_captions(rt, meeting, "0")
        try:
            got = await take(feed, 3)
            store_final(rt, meeting, "dave", 0, "Sentinel.")  # nothing else came before it
            return got + await take(feed, 1)
        finally:
            await feed.aclose()

    got = asyncio.run(go())
    assert shown(got) == [
        ("interim", "alice.0", 3, "a b c"),
        ("interim", "bob.5", 2, "x y"),
        ("interim", "carol.2", 1, "new"),
        ("final", "dave.0", 0, "Sentinel."),
    ]
    # one read of every participant's slot per batch, not one per stream entry
    assert reads[0] == ["alice", "bob", "carol"]


def test_resume_by_cursor_is_exact_with_interims(rt: Runtime, meeting: Meeting) -> None:
    store_final(rt, meeting, "alice", 0, "First.")
    assert show_interim(rt, meeting, "alice", 1, 1, "sec")

    async def follow(cursor: str, n: int) -> list[Caption]:
        feed = follow_captions(rt, meeting, cursor)
        try:
            return await take(feed, n)
        finally:
            await feed.aclose()

    first = asyncio.run(follow("0", 2))
    assert shown(first) == [("final", "alice.0", 0, "First."), ("interim", "alice.1", 1, "sec")]
    # while the client is away: a newer interim supersedes the one it saw, then the final
    assert show_interim(rt, meeting, "alice", 1, 2, "second one")
    store_final(rt, meeting, "alice", 1, "Second one.")
    store_final(rt, meeting, "bob", 0, "Third.")
    resumed = asyncio.run(follow(first[-1].cursor, 2))
    assert shown(resumed) == [
        ("final", "alice.1", 0, "Second one."),
        ("final", "bob.0", 0, "Third."),
    ]
    # from the final before the interim: the same, nothing twice and nothing missed
    assert shown(asyncio.run(follow(first[0].cursor, 2))) == shown(resumed)
    # from the start: finals only now, each once
    assert [c.utterance for c in asyncio.run(follow("0", 3))] == ["alice.0", "alice.1", "bob.0"]
    # every caption was opened for delivery, with a key unwrapped once per participant and
    # follower (alice for the first; alice and bob for each of the other three; this test
    # seals with the meeting's own key, which each participant falls back to)
    uses = [
        e
        for e in rt.keys.audit.entries(meeting.tenant_id)
        if e.meeting == meeting.id and e.action == "unwrap" and e.purpose == "deliver"
    ]
    assert len(uses) == 7 and all(e.outcome == "ok" for e in uses)


def test_an_interim_of_an_utterance_already_final_is_never_shown(
    rt: Runtime, meeting: Meeting
) -> None:
    assert show_interim(rt, meeting, "alice", 0, 1, "early")
    store_final(rt, meeting, "alice", 0, "Early.")
    # a slow interim task comes back after the final: the store refuses it
    assert not show_interim(rt, meeting, "alice", 0, 2, "early bird")

    async def go() -> list[Caption]:
        feed = follow_captions(rt, meeting, "0")
        try:
            got = await take(feed, 1)
            store_final(rt, meeting, "bob", 0, "Sentinel.")
            return got + await take(feed, 1)
        finally:
            await feed.aclose()

    assert shown(asyncio.run(go())) == [
        ("final", "alice.0", 0, "Early."),
        ("final", "bob.0", 0, "Sentinel."),
    ]


def test_the_privacy_report_counts_interims(rt: Runtime, meeting: Meeting) -> None:
    empty = privacy_report(rt, meeting.id)
    assert (empty.interims_transcribed, empty.interims_purged) == (0, {})
    for outcome, n in (("transcribed", 7), ("superseded", 3), ("opted-out", 1), ("too-late", 2)):
        rt.store.interims.count(meeting.id, outcome, n)
    report = privacy_report(rt, meeting.id)
    assert report.interims_transcribed == 7
    assert report.interims_purged == {"opted-out": 1, "superseded": 3, "too-late": 2}
    # and in the API's report, with what interims never become
    token = create_token(rt, meeting.tenant_id, "report", ["read"])[1]
    with TestClient(create_app(rt)) as client:
        r = client.get(
            f"/v1/meetings/{meeting.id}/privacy", headers={"Authorization": f"Bearer {token}"}
        )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["interims_transcribed"] == 7
    assert doc["interims_purged"] == {"opted-out": 1, "superseded": 3, "too-late": 2}
    assert doc["interims_note"] == INTERIMS_NOTE and "never enter the transcript" in INTERIMS_NOTE
