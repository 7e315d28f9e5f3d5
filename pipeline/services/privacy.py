"""The per-meeting privacy report: when transcription was on, who opened what with which
purpose, what was purged and why, what became of the interim captions, whether the audit
chain holds, and whether the stored content is complete (the manifests)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from keys.audit import AuditEntry
from pipeline.runtime import Runtime
from pipeline.services.custody import audit_verify
from pipeline.services.records import verify_meeting

__all__ = ["INTERIMS_NOTE", "PrivacyReport", "privacy_report"]

#: what every rendering of the report says about interim captions
INTERIMS_NOTE = (
    "interim captions are shown live only: they never enter the transcript, its exports or "
    "retention, and each is gone once a newer interim or the final replaces it"
)
#: the outcome of an interim that was transcribed; every other outcome purged it untranscribed
TRANSCRIBED = "transcribed"


@dataclass(frozen=True)
class PrivacyReport:
    meeting_id: str
    tenant_id: str
    transcription_now: bool
    #: (time, "on" | "off", actor), oldest first; a meeting starts off unless created on
    switches: tuple[tuple[float, str, str], ...]
    #: (purpose, actor, outcome) -> number of data-key uses
    key_uses: dict[str, int]
    #: reason -> number of segments purged untranscribed
    purged: dict[str, int]
    consent_changes: tuple[tuple[float, str, str], ...]
    transcript_segments: int
    audio_pending: int
    audit_intact: bool
    audit_problems: tuple[str, ...]
    #: interim captions transcribed (shown live, never part of the transcript)
    interims_transcribed: int = 0
    #: reason (superseded, transcription-off, opted-out, key-revoked, too-late, ...) ->
    #: number of interims whose sealed audio was dropped untranscribed
    interims_purged: dict[str, int] = field(default_factory=dict)
    #: every sealed segment accounted for by the manifests (see ``meeting verify``)
    complete: bool = True
    #: each missing or altered segment or record, named
    missing: tuple[str, ...] = ()
    #: (time, "CHANNEL:KIND", actor) of each notice posted to the room (text: its chat),
    #: oldest first: on join, on switch on and off, at each consent change
    notices: tuple[tuple[float, str, str], ...] = ()
    #: where the speakers come from: ``tracks`` (each participant's own audio track) or
    #: ``talking-events`` (a mixed room: who the room reported talking, see PRIVACY.md)
    speakers: str = "tracks"


def privacy_report(rt: Runtime, meeting_id: str, tenant_id: str | None = None) -> PrivacyReport:
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    entries: list[AuditEntry] = [
        e for e in rt.keys.audit.entries(meeting.tenant_id) if e.meeting == meeting.id
    ]
    verdict = audit_verify(rt, meeting.tenant_id, quick=True)
    record = verify_meeting(rt, meeting.id, meeting.tenant_id, verdict, entries)
    uses = Counter(
        f"{e.purpose} by {e.actor}: {e.outcome}" for e in entries if e.action == "unwrap"
    )
    interims = rt.store.interims.counts(meeting.id)
    return PrivacyReport(
        meeting_id=meeting.id,
        tenant_id=meeting.tenant_id,
        transcription_now=meeting.transcription,
        switches=tuple((e.at, e.outcome, e.actor) for e in entries if e.action == "transcription"),
        key_uses=dict(uses),
        purged=dict(Counter(e.outcome for e in entries if e.action == "purge")),
        consent_changes=tuple((e.at, e.outcome, e.actor) for e in entries if e.action == "consent"),
        transcript_segments=rt.store.segments.transcript_count(meeting.id),
        audio_pending=rt.store.segments.pending_count(meeting.id),
        audit_intact=verdict.ok,
        audit_problems=verdict.problems,
        interims_transcribed=interims.pop(TRANSCRIBED, 0),
        interims_purged={why: n for why, n in sorted(interims.items()) if n},
        complete=record.complete,
        missing=record.missing,
        notices=tuple((e.at, e.outcome, e.actor) for e in entries if e.action == "notice"),
        speakers=rt.store.meetings.speaker_source(meeting.id),
    )
