"""Guarantee 9: records the customer can check without trusting the operator.

An operator with Redis access can delete and rewrite anything there. The audit chain is keyed
with the tenant's key, so a rewrite (hashes recomputed) is named, and a truncation is named
against a head the customer saved; each meeting's manifests name a deleted segment or
transcript; one person can be erased across meetings, so that even a Redis backup from before
opens nothing of theirs while everyone else's content stays readable; and the erasure
receipt cannot be edited unnoticed.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from typing import Any

import pytest
import redis

from keys.audit import AuditEntry
from keys.errors import KeyUnavailable
from keys.types import KeyUse, Purpose
from pipeline import services
from pipeline.store import schema
from pipeline.store.connection import as_str
from tests.harness.processes import wait_until
from tests.privacy.deployment import Api, Deployment
from tests.privacy.live import participant, settled, words
from tests.privacy.speech import PHRASES, require_espeak


def _audit_entries(api: Api, n: int = 3) -> None:
    """Give the tenant's chain some entries: meetings (their keys wrapped) and a rotation."""
    for _ in range(n):
        api.meeting(transcription=False)
    api.ok("POST", "/v1/keys/rotate")


class _Chain:
    """The tenant's audit chain in Redis, as an operator can read and rewrite it."""

    def __init__(self, r: redis.Redis, tenant_id: str) -> None:
        self.r, self.tenant_id = r, tenant_id
        self.key, self.head_key = schema.audit(tenant_id), schema.audit_head(tenant_id)
        self.saved = [as_str(e) for e in r.lrange(self.key, 0, -1)]
        self.saved_head: dict[Any, Any] = dict(r.hgetall(self.head_key))

    def put(self, rows: list[str]) -> None:
        last = AuditEntry.from_json(rows[-1]).hash
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.key)
        pipe.rpush(self.key, *rows)
        pipe.hset(self.head_key, mapping={"count": len(rows), "hash": last})
        pipe.execute()

    def restore(self) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.key)
        pipe.rpush(self.key, *self.saved)
        pipe.hset(self.head_key, mapping=self.saved_head)
        pipe.execute()


def test_a_truncation_is_named_against_a_saved_head(deployment: Deployment) -> None:
    a = deployment.tenant("a")
    api = deployment.api(a)
    _audit_entries(api)
    head = api.ok("GET", "/v1/audit/head")
    api.meeting(transcription=False)  # the chain goes on after the head was saved
    chain = _Chain(deployment.redis(), a.id)
    assert api.ok("POST", "/v1/audit/verify", json={"since": head})["ok"] is True
    try:
        # Cut the chain back to before the saved head, and fix up the stored head.
        chain.put(chain.saved[: head["count"] - 2])
        alone = api.ok("GET", "/v1/audit/verify")
        assert alone["ok"] is True, "a prefix of a keyed chain verifies by itself"
        verdict = api.ok("POST", "/v1/audit/verify", json={"since": head})
    finally:
        chain.restore()
    assert verdict["ok"] is False
    assert verdict["problems"][0].startswith(
        f"truncated: the chain has {head['count'] - 2} entries, but the saved head is "
        f"entry {head['count'] - 1}"
    ), verdict
    assert api.ok("POST", "/v1/audit/verify", json={"since": head})["ok"] is True


def test_a_rewrite_with_recomputed_hashes_is_named(deployment: Deployment) -> None:
    a = deployment.tenant("a")
    api = deployment.api(a)
    _audit_entries(api)
    head = api.ok("GET", "/v1/audit/head")
    chain = _Chain(deployment.redis(), a.id)
    rows = [json.loads(e) for e in chain.saved]
    rotate = next(i for i, e in enumerate(rows) if e["action"] == "rotate")
    assert all(e.get("mac") for e in rows), "every entry carries the tenant key's MAC"
    # The operator hides who rotated the key: the entry is edited and every hash after it
    # recomputed (and the stored head), as anyone with Redis access can do.
    rows[rotate]["actor"] = "nobody"
    prev = rows[rotate - 1]["hash"]
    forged = []
    for doc in rows[rotate:]:
        entry = AuditEntry.from_json(json.dumps({**doc, "prev": prev}))
        doc = {**doc, "prev": prev, "hash": entry.compute_hash()}
        forged.append(json.dumps(doc))
        prev = doc["hash"]
    try:
        chain.put(chain.saved[:rotate] + forged)
        alone = api.ok("GET", "/v1/audit/verify")
        against = api.ok("POST", "/v1/audit/verify", json={"since": head})
    finally:
        chain.restore()
    assert alone["ok"] is False
    assert alone["problems"] == [
        f"entry {n} has a MAC that is not the tenant key's (rewritten)"
        for n in range(rotate, len(rows))
    ], alone
    assert f"rewritten: entry {head['count'] - 1}" in " ".join(against["problems"])
    assert api.ok("GET", "/v1/audit/verify")["ok"] is True


async def _meeting(api: Api, m: str, phrases: list[str], name: str = "Alice") -> None:
    async with participant(api, m, name) as who:
        for phrase in phrases:
            await who.says(phrase)
            await asyncio.sleep(0.8)  # a pause: one utterance per phrase


def _complete(api: Api, m: str) -> dict[str, Any]:
    """The meeting's verification once capture has closed and anchored its manifests."""
    result: dict[str, Any] = {}

    def anchored() -> bool:
        result.update(api.ok("GET", f"/v1/meetings/{m}/verify"))
        return all(p["erased"] or p["anchored"] == p["records"] for p in result["participants"])

    wait_until(anchored, 15, "capture to anchor the manifests", interval=0.2)
    return result


def test_a_deleted_segment_and_a_deleted_transcript_are_named(deployment: Deployment) -> None:
    require_espeak()
    local = deployment.need_local("pausing the workers while a segment is deleted")
    a = deployment.tenant("a")
    api = deployment.api(a)
    r = deployment.redis()
    m, kept = api.meeting(), api.meeting()
    phrases = [PHRASES["Flintwick"], PHRASES["Copperfield"], PHRASES["Kensington"]]

    async def both() -> None:
        await asyncio.gather(_meeting(api, m, phrases), _meeting(api, kept, phrases[:1]))

    with local.workers_paused():
        asyncio.run(both())
        wait_until(lambda: r.zcard(schema.meeting_audio(m)) >= 3, 15, "three segments stored")
        # The operator deletes one sealed segment before any worker sees it.
        gone = as_str(r.zrange(schema.meeting_audio(m), 1, 1)[0])
        pipe = r.pipeline(transaction=True)
        pipe.delete(schema.audio(m, gone))
        pipe.zrem(schema.meeting_audio(m), gone)
        pipe.zrem(schema.PENDING, schema.pending_member(m, gone))
        pipe.execute()
    settled(r, m, transcripts=2)
    settled(r, kept)
    # ... and one transcript, after it was transcribed.
    lost = as_str(r.zrange(schema.meeting_transcript(m), -1, -1)[0])
    r.delete(schema.transcript(m, lost))
    r.zrem(schema.meeting_transcript(m), lost)

    assert _complete(api, kept)["complete"] is True, "an untouched meeting verifies complete"
    verdict = _complete(api, m)
    expected = [
        f"Alice: segment {gone} was deleted (sealed, but neither transcribed nor purged)",
        f"Alice: the transcript of segment {lost} was deleted",
    ]
    assert verdict["complete"] is False
    assert sorted(verdict["missing"]) == sorted(expected), verdict
    got = api("GET", f"/v1/meetings/{m}/transcript")
    assert (got.headers["X-Transcript-Complete"], got.headers["X-Transcript-Missing"]) == (
        "false",
        "2",
    )
    assert got.headers["X-Transcript-Speakers"] == "tracks"  # each person's own track
    report = api.ok("GET", f"/v1/meetings/{m}/privacy")
    assert report["complete"] is False and sorted(report["missing"]) == sorted(expected)
    export = api("GET", "/v1/tenant/export")
    with zipfile.ZipFile(io.BytesIO(export.content)) as zf:
        manifest = json.loads(zf.read(f"meetings/{m}/manifest.json"))
    assert manifest["complete"] is False and sorted(manifest["missing"]) == sorted(expected)


def test_a_participant_erased_across_three_meetings_is_unreadable_even_from_a_backup(
    deployment: Deployment,
) -> None:
    require_espeak()
    local = deployment.need_local("opening a restored backup with the service's key access")
    a = deployment.tenant("a")
    api = deployment.api(a)
    r = deployment.redis()
    meetings = [api.meeting() for _ in range(3)]

    async def speak() -> None:
        async def one(m: str) -> None:
            async with participant(api, m, "Alice") as alice, participant(api, m, "Bob") as bob:
                await alice.says(PHRASES["Flintwick"])
                await asyncio.sleep(0.5)
                await bob.says(PHRASES["Wimbledon"])

        await asyncio.gather(*(one(m) for m in meetings))

    asyncio.run(speak())
    for m in meetings:
        settled(r, m, transcripts=2)
        heard = words(api.transcript(m))
        assert {"flintwick", "wimbledon"} <= heard, heard
    backup = {k: r.dump(k) for m in meetings for k in r.scan_iter(match=f"*{m}*")}

    receipt = api.ok("POST", "/v1/participants/erase", json={"name": "Alice", "confirm": "erase"})
    assert sorted(e["meeting"] for e in receipt["meetings"]) == sorted(meetings)
    assert all(e["transcript_segments"] >= 1 and e["keys_shredded"] for e in receipt["meetings"])
    for m in meetings:
        heard = words(api.transcript(m))
        assert "wimbledon" in heard and "flintwick" not in heard, heard
        assert not [k for k in r.hkeys(schema.meeting_keys(m)) if b"Alice" in k]
    status = api.ok("GET", "/v1/keys")
    assert status["versions"] == [status["primary_version"]] == [receipt["key_version"]], (
        "the tenant key versions that wrapped Alice's keys are retired"
    )

    rt = local.rt
    try:  # restore the backup taken before the erasure: Alice's wrapped keys are back
        for k, v in backup.items():
            assert v is not None
            r.restore(k, 0, v, replace=True)
        for m in meetings:
            meeting = rt.store.meetings.get(m)
            with pytest.raises(KeyUnavailable, match="retired"):
                services.data_key(rt, meeting, KeyUse.TRANSCRIPT, Purpose.DELIVER, "Alice")
            got = api("GET", f"/v1/meetings/{m}/transcript")
            assert got.status_code == 503 and "flintwick" not in got.text.lower()
    finally:
        for k in backup:
            r.delete(k)
        for m in meetings:
            r.srem(schema.tenant_meetings(a.id), m)


def test_an_edited_erasure_receipt_fails_verification(deployment: Deployment) -> None:
    local = deployment.need_local("sealing a transcript as the worker does")
    a = deployment.tenant("a")
    api = deployment.api(a)
    rt = local.rt
    meeting = services.create_meeting(rt, a.id, transcription=True)
    for who in ("Carol", "Dave"):
        _transcribed(rt, meeting, who, "An agenda item.")
    receipt = api.ok("POST", "/v1/participants/erase", json={"name": "Carol", "confirm": "erase"})
    assert [(e["participant"], e["transcript_segments"]) for e in receipt["meetings"]] == [
        ("Carol", 1)
    ]
    check = api.ok("POST", "/v1/audit/receipts/verify", json=receipt)
    assert check == {"ok": True, "problems": [], "notes": []}
    edited = json.loads(json.dumps(receipt))
    edited["meetings"][0]["transcript_segments"] = 0  # "there was nothing of hers"
    check = api.ok("POST", "/v1/audit/receipts/verify", json=edited)
    assert check["ok"] is False
    assert (
        "the receipt was changed after it was issued: its MAC does not match" in check["problems"]
    )
    assert api.ok("GET", f"/v1/meetings/{meeting.id}/transcript") != ""


def test_erasing_a_person_erases_what_they_said_at_once_with_others(
    deployment: Deployment,
) -> None:
    """In a mixed room, speech of several at once is stored under their group
    (``Carol + Dave``): it carries Carol's voice, so erasing Carol erases it and its keys,
    while what Dave said alone stays readable."""
    local = deployment.need_local("sealing a transcript as the worker does")
    a = deployment.tenant("a")
    api = deployment.api(a)
    rt = local.rt
    meeting = services.create_meeting(rt, a.id, transcription=True)
    _transcribed(rt, meeting, "Carol + Dave", "Both at once.")
    _transcribed(rt, meeting, "Dave", "Dave alone.")
    receipt = api.ok("POST", "/v1/participants/erase", json={"name": "Carol", "confirm": "erase"})
    assert [(e["participant"], e["transcript_segments"]) for e in receipt["meetings"]] == [
        ("Carol + Dave", 1)
    ]
    heard = words(api.transcript(meeting.id))
    assert heard == {"dave", "alone"}, heard
    assert not [
        k for k in deployment.redis().hkeys(schema.meeting_keys(meeting.id)) if b"Carol" in k
    ]


def _transcribed(rt: Any, meeting: Any, who: str, text: str) -> None:
    """A transcript segment of ``who``, sealed with their own key as the worker seals one."""
    from pipeline.datakeys import sealing_key
    from pipeline.models import SealedSegment, TranscriptSegment
    from pipeline.sealing import seal_transcript

    sealing_key(rt, meeting, who)  # their keys, made as capture makes them
    key = services.data_key(rt, meeting, KeyUse.TRANSCRIPT, Purpose.TRANSCRIBE, who)
    segment = TranscriptSegment(who, 0, 0, 1000, text)
    sealed: SealedSegment = seal_transcript(key, meeting.tenant_id, meeting.id, segment)
    rt.store.segments.complete(sealed, 0)
