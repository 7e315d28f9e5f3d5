"""Data-subject rights: a tenant's export holds everything it owns; an erase leaves nothing
that can be opened, not even from a Redis backup taken before it."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from keys.errors import KeyRevoked, KeyUnavailable, UnknownKey
from keys.types import KeyUse, Purpose
from pipeline import services
from pipeline.cli import app
from pipeline.errors import AuthenticationFailed, InvalidInput, NotFound
from pipeline.models import Meeting, TranscriptSegment, Word
from pipeline.runtime import Runtime
from pipeline.sealing import seal_transcript
from pipeline.store import schema


def add_transcript(rt: Runtime, meeting: Meeting, texts: list[str]) -> None:
    key = services.data_key(rt, meeting, KeyUse.TRANSCRIPT, Purpose.TRANSCRIBE)
    for seq, text in enumerate(texts):
        seg = TranscriptSegment(
            "alice",
            seq,
            seq * 2000,
            seq * 2000 + 1500,
            text,
            (Word(seq * 2000, seq * 2000 + 400, text.split()[0], 0.9),),
        )
        rt.store.segments.complete(
            seal_transcript(key, meeting.tenant_id, meeting.id, seg), seg.start_ms
        )


def test_export_holds_everything_the_tenant_owns(rt: Runtime, tmp_path: Path) -> None:
    tenant, _ = services.create_tenant(rt, "Acme")
    other, _ = services.create_tenant(rt, "Other")
    m1 = services.create_meeting(rt, tenant.id, transcription=True)
    m2 = services.create_meeting(rt, tenant.id)
    add_transcript(rt, m1, ["Quarterly numbers look good.", "Ship it on Friday."])
    add_transcript(
        rt, services.create_meeting(rt, other.id, transcription=True), ["Not yours to see."]
    )
    out = tmp_path / "acme.zip"
    report = services.export_tenant(rt, tenant.id, out)
    assert (report.meetings, report.transcript_segments) == (2, 2)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert {
            f"meetings/{m.id}/{f}"
            for m in (m1, m2)
            for f in ("meeting.json", "transcript.json", "transcript.vtt")
        } < names
        vtt = zf.read(f"meetings/{m1.id}/transcript.vtt").decode()
        assert "<v alice>Quarterly numbers look good." in vtt
        doc = json.loads(zf.read(f"meetings/{m1.id}/transcript.json"))
        assert [d["text"] for d in doc] == ["Quarterly numbers look good.", "Ship it on Friday."]
        everything = b"".join(zf.read(n) for n in names)
        assert b"Not yours to see" not in everything
        audit = [json.loads(line) for line in zf.read("audit.jsonl").splitlines()]
        assert audit[-1]["action"] == "unwrap" and audit[-1]["purpose"] == "deliver"
    assert not list(tmp_path.glob("*.part"))
    with pytest.raises(InvalidInput, match="already exists"):
        services.export_tenant(rt, tenant.id, out)


def test_erase_leaves_only_the_erase_entry(
    rt: Runtime, redis_client: redis.Redis, tmp_path: Path
) -> None:
    tenant, token = services.create_tenant(rt, "Acme")
    kept, _ = services.create_tenant(rt, "Kept")
    meetings = [services.create_meeting(rt, tenant.id, transcription=True) for _ in range(2)]
    for m in meetings:
        add_transcript(rt, m, ["Confidential roadmap talk."])
    kept_meeting = services.create_meeting(rt, kept.id, transcription=True)
    add_transcript(rt, kept_meeting, ["Still here."])
    backup = {k: redis_client.dump(k) for k in redis_client.scan_iter("*")}

    result = CliRunner().invoke(app, ["tenant", "erase", tenant.id, "--yes", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"tenant_id": tenant.id, "meetings": 2}
    left = {
        k.decode()
        for k in redis_client.scan_iter("*")
        if tenant.id.encode() in k or any(m.id.encode() in k for m in meetings)
    }
    assert left == {schema.audit(tenant.id), schema.audit_head(tenant.id)}
    entries = rt.keys.audit.entries(tenant.id)
    assert [(e.seq, e.action) for e in entries] == [(0, "erase")]
    assert not (rt.settings.keyring_dir / f"{tenant.id}.json").exists()
    with pytest.raises(AuthenticationFailed):
        services.authenticate(rt, token)
    # The other tenant is untouched.
    assert services.read_transcript(rt, kept_meeting.id)[0].text == "Still here."

    # A backup taken before the erase cannot be opened: the key is gone.
    redis_client.flushdb()
    for k, v in backup.items():
        assert v is not None
        redis_client.restore(k, 0, v)
    with pytest.raises((NotFound, UnknownKey, KeyRevoked, KeyUnavailable)):
        services.data_key(rt, meetings[0], KeyUse.TRANSCRIPT, Purpose.DELIVER)


def test_erase_needs_confirmation_and_a_real_tenant(rt: Runtime) -> None:
    tenant, _ = services.create_tenant(rt, "Acme")
    runner = CliRunner()
    assert runner.invoke(app, ["tenant", "erase", tenant.id]).exit_code == 2
    assert runner.invoke(app, ["tenant", "erase", "t_nope", "--yes"]).exit_code == 3
    assert services.get_tenant(rt, tenant.id).name == "Acme"
