"""``sealscribe demo``: the embedded default, end to end, on this machine.

A tenant with its own key; a meeting with transcription off by default, then switched on; a
short bundled recording (JFK's inaugural address, re-encoded, see ``demo_data/NOTICE.md``)
decoded in memory, cut into utterances, sealed into Redis and transcribed by a real Celery
worker (started here unless one is running); the transcript opened with the customer's key;
a key rotation with everything still readable; a scan showing no plaintext in Redis or
``$SEALSCRIBE_HOME``; a crypto-shredding delete; and the audit log verified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from keys.errors import Conflict
from pipeline import services
from pipeline.formats import render
from pipeline.runtime import Runtime
from pipeline.scan import scan
from pipeline.services.transcripts import read_transcript, submit_file, wait_for
from workers.process import worker_process

__all__ = ["DEMO_CLIP", "DemoResult", "run_demo"]

DEMO_CLIP = Path(__file__).with_name("demo_data") / "jfk.ogg"
CANARY = "fellow Americans"


@dataclass(frozen=True)
class DemoResult:
    tenant_id: str
    meeting_id: str
    segments: int
    transcript: str
    primary_version: int
    plaintext_found: int
    audit_entries: int
    audit_intact: bool
    readable_after_delete: bool


def run_demo(rt: Runtime, say: Callable[[str], None] = print) -> DemoResult:
    tenant, _token = services.create_tenant(rt, "Demo tenant")
    say(f"1. tenant {tenant.id} created with its own key (provider: {tenant.key_provider})")
    meeting = services.create_meeting(rt, tenant.id)
    say(f"2. meeting {meeting.id} created; transcription is "
        f"{'on' if meeting.transcription else 'OFF'} by default")
    services.set_transcription(rt, meeting.id, True)
    say("3. transcription switched on by the customer")
    with worker_process(rt.settings, rt.settings.log_dir / "demo-worker.log") as started:
        say("   (started a Celery worker with the tiny.en model)" if started
            else "   (using the worker that is already running)")
        job = submit_file(rt, DEMO_CLIP, tenant.id, meeting.id)
        say(f"4. {job.audio_seconds:.0f} s recording sealed into Redis as {job.segments} "
            "segment(s) and queued (ids only)")
        wait_for(rt, job, lambda *_: None, timeout=600)
    segments = read_transcript(rt, meeting.id)
    text = render(segments, "txt")
    say("5. transcribed by the worker, audio deleted; transcript opened with your key:")
    say("   " + text.strip().replace("\n", "\n   "))

    report = services.rotate_keys(rt, tenant.id)
    services.retire_keys(rt, tenant.id, report.primary_version)
    if read_transcript(rt, meeting.id) != segments:
        raise Conflict("the transcript did not survive key rotation")
    say(f"6. key rotated to version {report.primary_version} ({report.rewrapped} data keys "
        "rewrapped, no content re-encrypted), old versions retired: transcript still opens")

    found = scan(rt.store.redis, CANARY, rt.settings.home, temp_dir=rt.settings.home)
    say(f"7. plaintext scan for {CANARY!r} in Redis and {rt.settings.home}: "
        f"{'found nowhere' if not found else f'FOUND in {len(found)} places'}")

    services.delete_meeting(rt, meeting.id)
    readable = bool(rt.store.segments.transcript(meeting.id))
    say("8. meeting deleted: data keys shredded, records gone, old key versions retired")
    verdict = services.audit_verify(rt, tenant.id)
    say(f"9. audit log: {verdict.entries} hash-chained entries, "
        f"{'intact' if verdict.ok else 'TAMPERED'}")
    primary = services.key_status(rt, tenant.id).status.primary_version
    return DemoResult(tenant.id, meeting.id, job.segments, text, primary, len(found),
                      verdict.entries, verdict.ok, readable)
