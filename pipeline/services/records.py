"""Meeting verification: the customer checks, with their own key, that a meeting's stored
content is all there is, or learns which segments are missing.

It reads the participants' manifests (:mod:`pipeline.manifest`), unwrapping each
participant's audio key with purpose ``verify`` (no content is opened), and the tenant's
keyed audit chain (key creation per participant, manifest anchors, purges, erasures), and
names every sealed segment that is neither stored, transcribed, purged nor expired.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from keys.audit import AuditEntry, VerifyReport
from keys.types import KeyUse, Purpose
from pipeline import faults
from pipeline.datakeys import data_key
from pipeline.errors import NotFound
from pipeline.manifest import TRANSCRIBED, manifest_key, parse_outcome, parse_sealed
from pipeline.models import Meeting, parse_segment_id, segment_id
from pipeline.runtime import Runtime
from pipeline.services.custody import audit_verify

__all__ = ["MeetingRecord", "ParticipantRecord", "verify_meeting"]

_RECORD = re.compile(r"^(.*)#([0-9]+)$")


@dataclass(frozen=True)
class ParticipantRecord:
    participant: str
    #: audio segments sealed and stored (manifest records)
    sealed: int = 0
    transcribed: int = 0
    #: reason -> segments purged untranscribed (from the keyed audit chain)
    purged: dict[str, int] = field(default_factory=dict)
    #: stored, waiting for a worker
    pending: int = 0
    #: gone by retention (audio TTL untranscribed, or transcript TTL)
    expired: int = 0
    #: records in the manifest, and how many of them the audit chain anchors (None: none)
    records: int = 0
    anchored: int | None = None
    #: erased on request (participant erase): nothing of theirs is left to check
    erased: bool = False
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class MeetingRecord:
    meeting_id: str
    tenant_id: str
    #: every sealed segment accounted for, every record authentic and anchored
    complete: bool
    participants: tuple[ParticipantRecord, ...]
    #: each missing or altered segment or record, named
    missing: tuple[str, ...]
    notes: tuple[str, ...] = ()


def verify_meeting(
    rt: Runtime,
    meeting_id: str,
    tenant_id: str | None = None,
    chain: VerifyReport | None = None,
    entries: Sequence[AuditEntry] | None = None,
) -> MeetingRecord:
    """Check the meeting's manifests against what is stored and the keyed audit chain.

    ``chain`` (the chain's verification) and ``entries`` (its entries, of this meeting or
    of the whole tenant) are read here unless the caller, checking many meetings, has them."""
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    if faults.on("no-manifest"):
        return MeetingRecord(meeting.id, meeting.tenant_id, True, (), ())
    chain = chain or audit_verify(rt, meeting.tenant_id, quick=True)
    if entries is None:
        entries = rt.keys.audit.entries(meeting.tenant_id)
    entries = [e for e in entries if e.meeting == meeting.id]
    records, outcomes = rt.store.segments.manifest(meeting.id)
    by_participant: dict[str, dict[str, str]] = {}
    for name, raw in records.items():
        m = _RECORD.match(name)
        if m is not None:
            by_participant.setdefault(m.group(1), {})[m.group(2)] = raw
        elif name.endswith("#n"):
            by_participant.setdefault(name[:-2], {})["n"] = raw
    made = {e.participant for e in entries if e.action == "wrap" and e.participant}
    erased = {e.participant for e in entries if e.action == "participant-erase"}
    notes: list[str] = []
    if not chain.ok:
        notes.append("the audit chain is not intact ('sealscribe audit verify' names how)")
    found: list[ParticipantRecord] = []
    for participant in sorted(made | set(by_participant) | erased, key=str):
        if participant is None:
            continue
        if participant in erased:
            found.append(ParticipantRecord(participant, erased=True))
            continue
        found.append(
            _check_participant(
                rt, meeting, participant, by_participant.get(participant, {}), outcomes, entries
            )
        )
    unrecorded = _unrecorded(rt, meeting, found, erased)
    if unrecorded:
        notes.append(
            f"{unrecorded} transcript segments are from before manifests (not recorded in one)"
        )
    missing = [m for p in found for m in p.missing]
    anchored = all(p.erased or p.missing or (p.anchored or 0) >= p.records for p in found)
    if not anchored:
        notes.append(
            "some manifests have records after their last anchor: capture is still running, "
            "or stopped without closing (their end cannot be proven)"
        )
    complete = not missing and chain.ok and anchored
    return MeetingRecord(
        meeting.id, meeting.tenant_id, complete, tuple(found), tuple(missing), tuple(notes)
    )


def _check_participant(
    rt: Runtime,
    meeting: Meeting,
    participant: str,
    records: dict[str, str],
    outcomes: dict[str, str],
    entries: list[AuditEntry],
) -> ParticipantRecord:
    missing: list[str] = []
    if not rt.store.meetings.has_participant_keys(meeting.id, participant):
        return ParticipantRecord(
            participant,
            missing=(f"{participant}: their data keys are gone with no erasure recorded",),
        )
    try:
        key = data_key(rt, meeting, KeyUse.AUDIO, Purpose.VERIFY, participant)
    except NotFound:
        return ParticipantRecord(participant, missing=(f"{participant}: their keys are gone",))
    mkey = manifest_key(key, meeting.tenant_id, meeting.id, participant)
    anchors = [
        int(e.outcome)
        for e in entries
        if e.action == "manifest" and e.participant == participant and e.outcome.isdigit()
    ]
    anchored = max(anchors) if anchors else None
    valid = {}
    for n_text, raw in records.items():
        if n_text == "n":
            continue
        record = parse_sealed(int(n_text), raw)
        if record is None or not record.valid(mkey):
            missing.append(f"{participant}: manifest record {n_text} was altered")
        else:
            valid[record.n] = record
    try:
        count = int(records.get("n", "0"))
    except ValueError:
        count = 0
    total = max([count, anchored or 0, *(n + 1 for n in valid)])
    for n in range(total):
        if n not in valid and str(n) not in records:
            missing.append(f"{participant}: manifest record {n} was deleted")
    purges: dict[str, str] = {}
    for e in entries:
        if e.action == "purge" and e.segment is not None:
            purges[e.segment] = e.outcome
    sids = sorted({segment_id(participant, r.seq) for r in valid.values()})
    audio, text = rt.store.segments.stored(meeting.id, sids)
    now = time.time()
    counts: Counter[str] = Counter()
    purged: Counter[str] = Counter()
    done: set[str] = set()
    for record in sorted(valid.values(), key=lambda r: r.n):
        sid = segment_id(participant, record.seq)
        if sid in done:  # recorded twice (a store retried): one segment
            continue
        done.add(sid)
        kept = outcomes.get(sid)
        outcome = None if kept is None else parse_outcome(record.seq, kept)
        if kept is not None and (outcome is None or not outcome.valid(mkey)):
            missing.append(f"{participant}: the outcome record of segment {sid} was altered")
        elif outcome is not None and outcome.state == TRANSCRIBED:
            if sid in text:
                counts["transcribed"] += 1
            elif now >= outcome.expires:
                counts["expired"] += 1
            else:
                missing.append(f"{participant}: the transcript of segment {sid} was deleted")
        elif sid in purges:
            purged[purges[sid]] += 1
        elif sid in audio:
            counts["pending"] += 1
        elif now >= record.expires:
            counts["expired"] += 1
        else:
            missing.append(
                f"{participant}: segment {sid} was deleted (sealed, but neither "
                "transcribed nor purged)"
            )
    return ParticipantRecord(
        participant,
        sealed=len(done),
        transcribed=counts["transcribed"],
        purged=dict(purged),
        pending=counts["pending"],
        expired=counts["expired"],
        records=total,
        anchored=anchored,
        missing=tuple(missing),
    )


def _unrecorded(
    rt: Runtime, meeting: Meeting, found: list[ParticipantRecord], erased: set[str | None]
) -> int:
    """Transcript segments of participants without a manifest (content from before)."""
    recorded = {p.participant for p in found if p.sealed or p.missing} | erased
    return sum(
        1
        for sid in rt.store.segments.transcript_ids(meeting.id)
        if parse_segment_id(sid)[0] not in recorded
    )
