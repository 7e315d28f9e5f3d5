"""``sealscribe demo``: the embedded default, end to end, on this machine.

Today this walks the foundation: a tenant with its own key, a meeting with transcription
off by default, audio sealed at capture (a generated tone stands in for a participant until
the capture and worker stages land), key rotation and retirement with every segment still
readable, a tamper-evident audit log, and a crypto-shredding delete.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

from keys.types import KeyUse, Purpose
from pipeline import services
from pipeline.models import AudioSegment
from pipeline.runtime import Runtime
from pipeline.sealing import open_audio, seal_audio

__all__ = ["DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    tenant_id: str
    meeting_id: str
    segments: int
    sealed_bytes: int
    primary_version: int
    audit_entries: int
    audit_intact: bool
    readable_after_delete: bool


def _tone(seconds: float, hz: float, rate: int = 16000) -> bytes:
    n = int(seconds * rate)
    return struct.pack(f"<{n}h", *(int(8000 * math.sin(2 * math.pi * hz * i / rate))
                                   for i in range(n)))


def run_demo(rt: Runtime, say: Callable[[str], None] = print) -> DemoResult:
    tenant, _token = services.create_tenant(rt, "Demo tenant")
    say(f"1. tenant {tenant.id} created with its own key (provider: {rt.keys.provider.name})")
    meeting = services.create_meeting(rt, tenant.id)
    say(f"2. meeting {meeting.id} created; transcription is "
        f"{'on' if meeting.transcription else 'OFF'} by default")
    meeting = services.set_transcription(rt, meeting.id, True)
    say("3. transcription switched on by the customer")

    key = services.data_key(rt, meeting, KeyUse.AUDIO, Purpose.TRANSCRIBE)
    originals = {}
    for seq in range(5):
        seg = AudioSegment("p_demo", seq, seq * 2000, 16000, _tone(2.0, 220 + 40 * seq))
        sealed = seal_audio(key, tenant.id, meeting.id, seg)
        originals[rt.store.segments.put_audio(sealed)] = seg.pcm
    sealed_bytes = sum(len(s.sealed) for sid in originals
                       if (s := rt.store.segments.get_audio(meeting.id, sid)) is not None)
    say(f"4. {len(originals)} audio segments sealed into Redis ({sealed_bytes:,} bytes of "
        "ciphertext, no plaintext)")

    report = services.rotate_keys(rt, tenant.id)
    services.retire_keys(rt, tenant.id, report.primary_version)
    say(f"5. key rotated to version {report.primary_version} ({report.rewrapped} data keys "
        "rewrapped, no content re-encrypted) and older versions retired")
    key = services.data_key(rt, meeting, KeyUse.AUDIO, Purpose.DELIVER)
    for sid, pcm in originals.items():
        stored = rt.store.segments.get_audio(meeting.id, sid)
        assert stored is not None and open_audio(key, tenant.id, stored).pcm == pcm
    say("6. every segment still opens with the customer's key after rotation")

    services.delete_meeting(rt, meeting.id)
    readable = any(rt.store.segments.get_audio(meeting.id, sid) for sid in originals)
    say("7. meeting deleted: data keys shredded, records gone, old key versions retired")
    verdict = services.audit_verify(rt, tenant.id)
    say(f"8. audit log: {verdict.entries} hash-chained entries, "
        f"{'intact' if verdict.ok else 'TAMPERED'}")
    primary = services.key_status(rt, tenant.id).status.primary_version
    return DemoResult(tenant.id, meeting.id, len(originals), sealed_bytes, primary,
                      verdict.entries, verdict.ok, readable)
