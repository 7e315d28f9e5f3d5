"""Customer-verifiable records as a user meets them: a recorded file's manifests checked by
``meeting verify`` (capture and a real worker), audit heads and the migration of a chain from
before keyed audit through the CLI, and erasure of one person by subject id with a receipt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from keys.types import KeyUse, Purpose
from pipeline import services
from pipeline.cli import app
from pipeline.config import Settings
from pipeline.datakeys import sealing_key
from pipeline.models import Meeting, TranscriptSegment
from pipeline.runtime import Runtime
from pipeline.sealing import seal_transcript
from pipeline.services.transcripts import read_transcript, submit_file, wait_for
from pipeline.store import schema
from pipeline.store.connection import as_str
from tests.conftest import shared_data
from tests.harness.processes import WORKER_REDIS_URL, WorkerProcess

runner = CliRunner()


def cli(*args: str, code: int = 0) -> str:
    """The command's output with its lines joined (Rich wraps them at the terminal width)."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())


@pytest.fixture
def rt(env: dict[str, str]) -> Runtime:
    return Runtime.from_settings(Settings.from_env(env), actor="test")


@pytest.fixture
def tenant(rt: Runtime) -> str:
    return services.create_tenant(rt, "Acme")[0].id


@pytest.fixture
def r(env: dict[str, str]) -> redis.Redis:
    return redis.Redis.from_url(WORKER_REDIS_URL)


def test_a_transcribed_file_verifies_complete_and_tampering_is_named(
    rt: Runtime, tenant: str, worker: WorkerProcess, r: redis.Redis
) -> None:
    job = submit_file(rt, shared_data("jfk", "jfk.flac"), tenant)
    wait_for(rt, job, lambda *_: None, 120)
    m = job.meeting.id
    record = services.verify_meeting(rt, m)
    assert record.complete and record.missing == () and record.notes == ()
    [who] = record.participants
    assert (who.sealed, who.transcribed, who.records, who.anchored) == (job.segments,) * 4
    assert "complete" in cli("meeting", "verify", m)
    assert "transcript complete" in cli("meeting", "transcript", m)
    assert "ask not" in " ".join(s.text for s in read_transcript(rt, m)).lower()

    # an operator deletes a transcript, then alters a manifest record and deletes another
    sids = [as_str(s) for s in r.zrange(schema.meeting_transcript(m), 0, -1)]
    r.delete(schema.transcript(m, sids[0]))
    r.zrem(schema.meeting_transcript(m), sids[0])
    out = cli("meeting", "verify", m, code=1)
    assert f"the transcript of segment {sids[0]} was deleted" in out
    assert "transcript incomplete" in cli("meeting", "transcript", m)
    manifest = schema.meeting_manifest(m)
    field = schema.manifest_record(who.participant, 0)
    seq, expires, _ = as_str(r.hget(manifest, field)).split("|")
    r.hset(manifest, field, f"{seq}|{int(expires) + 3600}|{'A' * 44}")  # a longer life
    missing = services.verify_meeting(rt, m).missing
    assert f"{who.participant}: manifest record 0 was altered" in missing
    if job.segments > 1:  # the last record and the count: the anchor still names it
        last = job.segments - 1
        r.hdel(manifest, schema.manifest_record(who.participant, last))
        r.hset(manifest, schema.manifest_count(who.participant), last)
        missing = services.verify_meeting(rt, m).missing
        assert f"{who.participant}: manifest record {last} was deleted" in missing


def test_audit_heads_and_a_chain_from_before_keyed_audit(
    rt: Runtime, tenant: str, tmp_path: Path, r: redis.Redis
) -> None:
    services.create_meeting(rt, tenant)
    head = tmp_path / "head.json"
    cli("audit", "head", "--tenant", tenant, "--out", str(head))
    saved = json.loads(head.read_text())
    assert saved["tenant"] == tenant and saved["mac"].startswith("local:v1:")
    assert "extending the saved head" in cli(
        "audit", "verify", "--tenant", tenant, "--since", str(head)
    )
    assert "already exists" in cli("audit", "head", "--tenant", tenant, "--out", str(head), code=2)
    services.create_meeting(rt, tenant)  # more entries after the head

    key, head_key = schema.audit(tenant), schema.audit_head(tenant)
    rows = [as_str(e) for e in r.lrange(key, 0, -1)]
    stored: dict[Any, Any] = dict(r.hgetall(head_key))
    r.ltrim(key, 0, saved["count"] - 2)  # cut back to before the head, head fixed up
    r.hset(
        head_key,
        mapping={"count": saved["count"] - 1, "hash": json.loads(rows[saved["count"] - 2])["hash"]},
    )
    try:
        assert "audit log intact" in cli("audit", "verify", "--tenant", tenant)
        out = cli("audit", "verify", "--tenant", tenant, "--since", str(head), code=1)
        assert "truncated" in out
    finally:
        r.delete(key)
        r.rpush(key, *rows)
        r.hset(head_key, mapping=stored)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert "not an audit head" in cli(
        "audit", "verify", "--tenant", tenant, "--since", str(bad), code=2
    )
    assert "cannot read" in cli(
        "audit", "verify", "--tenant", tenant, "--since", str(tmp_path / "no"), code=2
    )

    # A chain written before keyed audit: the same entries without MACs (hashes unchanged).
    legacy = [json.dumps({k: v for k, v in json.loads(e).items() if k != "mac"}) for e in rows]
    r.delete(key)
    r.rpush(key, *legacy)
    assert "no entry carries a MAC" in cli("audit", "verify", "--tenant", tenant, code=1)
    cli("audit", "migrate", "--tenant", tenant)
    out = cli("audit", "verify", "--tenant", tenant)
    assert "audit log intact" in out and f"{len(rows)} entries from before keyed audit" in out


def _own_transcript(rt: Runtime, meeting: Meeting, who: str, text: str) -> None:
    sealing_key(rt, meeting, who)
    key = services.data_key(rt, meeting, KeyUse.TRANSCRIPT, Purpose.TRANSCRIBE, who)
    segment = TranscriptSegment(who, 0, 0, 1000, text)
    rt.store.segments.complete(seal_transcript(key, meeting.tenant_id, meeting.id, segment), 0)


def test_erasure_by_subject_id_with_a_receipt(rt: Runtime, tenant: str, tmp_path: Path) -> None:
    meetings = [services.create_meeting(rt, tenant, transcription=True) for _ in range(3)]
    for m in meetings:
        _own_transcript(rt, m, "alice", "alice talks")
        _own_transcript(rt, m, "bob", "bob talks")
    for m in meetings[:2]:  # the third meeting's alice is someone else
        cli("participant", "subject", "--meeting", m.id, "alice", "crm-1")
    assert "code 2" not in cli(
        "participant", "erase", "--tenant", tenant, "alice", "--subject", "crm-1", "--yes", code=2
    )
    assert "nobody of that name" in cli(
        "participant", "erase", "--tenant", tenant, "carol", "--yes", code=3
    )

    receipt = tmp_path / "receipt.json"
    out = cli(
        "participant",
        "erase",
        "--tenant",
        tenant,
        "--subject",
        "crm-1",
        "--yes",
        "--receipt",
        str(receipt),
    )
    assert "erased subject crm-1 from 2 meetings" in out
    doc = json.loads(receipt.read_text())
    assert sorted(e["meeting"] for e in doc["meetings"]) == sorted(m.id for m in meetings[:2])
    assert (receipt.stat().st_mode & 0o777) == 0o600
    for m in meetings[:2]:
        assert [s.text for s in read_transcript(rt, m.id)] == ["bob talks"]
    assert sorted(s.text for s in read_transcript(rt, meetings[2].id)) == [
        "alice talks",
        "bob talks",
    ]
    assert "receipt authentic" in cli("audit", "verify-receipt", str(receipt))

    doc["meetings"] = doc["meetings"][:1]  # "only one meeting held anything of theirs"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    out = cli("audit", "verify-receipt", str(edited), code=1)
    assert "its MAC does not match" in out
    edited.write_text("[]")
    assert "not an erasure receipt" in cli("audit", "verify-receipt", str(edited), code=2)
