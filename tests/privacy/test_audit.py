"""Guarantee 7: every use of a key is audited with its purpose (transcribe, deliver,
rewrap), in a hash chain the tenant can export, where an entry edited or deleted in Redis
is named by ``audit verify``."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile

from pipeline.store import schema
from pipeline.store.connection import as_str
from tests.privacy.deployment import Deployment
from tests.privacy.live import participant, settled
from tests.privacy.sampler import Sampler
from tests.privacy.speech import PHRASES, require_espeak

PURPOSES = {"transcribe", "verify", "deliver", "rewrap"}


def test_every_key_use_is_audited_and_tampering_is_named(
    deployment: Deployment, sampler: Sampler
) -> None:
    require_espeak()
    a = deployment.tenant("a")
    api = deployment.api(a)
    r = deployment.redis()
    m = api.meeting()

    async def meeting() -> None:
        async with participant(api, m, "Alice") as alice:
            await alice.says(PHRASES["Flintwick"])

    asyncio.run(meeting())
    settled(r, m)
    api.transcript(m)  # delivery
    api.ok("POST", "/v1/keys/rotate")  # rewrapping

    entries = api.audit()
    used = {
        (e["action"], e["purpose"], e["actor"].split(":")[0])
        for e in entries
        if e["meeting"] == m and e["outcome"] == "ok"
    }
    assert ("unwrap", "transcribe", "worker") in used, "the worker's key use is not audited"
    assert {("unwrap", "deliver"), ("rewrap", "rewrap")} <= {u[:2] for u in used}, used
    key_uses = [e for e in entries if e["action"] in ("wrap", "unwrap", "rewrap")]
    assert {e["purpose"] for e in key_uses} <= PURPOSES, "a key use without a known purpose"
    assert {e["purpose"] for e in entries} <= PURPOSES | {None}
    verdict = api.ok("GET", "/v1/audit/verify")
    assert (verdict["ok"], verdict["entries"], verdict["problems"]) == (True, len(entries), [])
    assert verdict["authenticated"] == len(entries), "every entry is covered by a checked MAC"
    export = api("GET", "/v1/tenant/export")
    with zipfile.ZipFile(io.BytesIO(export.content)) as zf:
        exported = [json.loads(line) for line in zf.read("audit.jsonl").splitlines()]
    assert [e["hash"] for e in exported[: len(entries)]] == [e["hash"] for e in entries]
    assert {(e["action"], e["purpose"]) for e in exported[len(entries) :]} <= {
        ("unwrap", "deliver"),
        ("unwrap", "verify"),
    }, "the export opened the transcripts for delivery (and checked the manifests), and says so"

    # Tampering in Redis: an edit, then a deletion at the end, each named.
    key = schema.audit(a.id)
    deliver = next(
        e["seq"]
        for e in entries
        if e["action"] == "unwrap" and e["purpose"] == "deliver" and e["meeting"] == m
    )
    original = as_str(r.lindex(key, deliver))
    doc = json.loads(original)
    doc["actor"] = "someone-else"
    r.lset(key, deliver, json.dumps(doc))
    try:
        verdict = api.ok("GET", "/v1/audit/verify")
    finally:
        r.lset(key, deliver, original)
    assert verdict["ok"] is False and verdict["problems"] == [f"entry {deliver} was edited"]
    last = as_str(r.rpop(key))
    try:
        verdict = api.ok("GET", "/v1/audit/verify")
    finally:
        r.rpush(key, last)
    n = len(exported)
    assert verdict["problems"] == [f"the last 1 entries (from entry {n - 1}) were deleted"]
    assert api.ok("GET", "/v1/audit/verify")["ok"] is True
