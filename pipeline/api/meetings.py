"""Meetings: create, read, the transcription switch, participant consent, and the bot."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel, Field, WithJsonSchema

from pipeline.api.auth import Admin, Meetings, Reader, RuntimeDep, Viewer
from pipeline.api.problems import MAX_JSON_BYTES, StrictBody, problem_responses
from pipeline.formats import render
from pipeline.models import CONSENT_MODES, BotStatus, Meeting
from pipeline.services import bots, meetings
from pipeline.services.consent import LINK_DEFAULT_S, LINK_MAX_S, make_link
from pipeline.services.privacy import INTERIMS_NOTE, privacy_report
from pipeline.services.records import verify_meeting
from pipeline.services.transcripts import read_transcript, speakers_note

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/meetings",
    tags=["meetings"],
    max_body_size=MAX_JSON_BYTES,
    responses=problem_responses(401, 404, 503),
)

MeetingId = Annotated[str, Path(pattern=r"^m_[0-9a-f]{16}$", description="meeting id")]
Participant = Annotated[str, Path(min_length=1, max_length=64)]


class MeetingOut(BaseModel):
    id: str
    created: float
    transcription: bool = Field(description="transcription switch; off unless switched on")
    opted_out: list[str]
    language: str | None
    translate: bool
    consent_mode: ConsentMode = Field(
        description="notice: transcribed unless they opt out; opt-in: nobody until they consent"
    )
    opted_in: list[str] = Field(description="participants who consented")

    @classmethod
    def of(cls, m: Meeting) -> MeetingOut:
        return cls(
            id=m.id,
            created=m.created,
            transcription=m.transcription,
            opted_out=sorted(m.opted_out),
            language=m.language,
            translate=m.translate,
            consent_mode=m.consent_mode,  # type: ignore[arg-type]
            opted_in=sorted(m.opted_in),
        )


#: a meeting's consent mode (``pipeline.models.CONSENT_MODES``)
ConsentMode = Literal["notice", "opt-in"]
assert set(get_args(ConsentMode)) == set(CONSENT_MODES)


class MeetingIn(StrictBody):
    transcription: bool = False
    language: str | None = Field(default=None, max_length=3)
    translate: bool = False
    consent_mode: ConsentMode = "notice"


class ConsentModeIn(StrictBody):
    mode: ConsentMode


class Switch(StrictBody):
    enabled: bool


Subject = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9._:@-]{1,128}$",
        description="your own id for this person (erase them later by it)",
    ),
]


class Consent(StrictBody):
    transcribe: bool = Field(description="false: this participant's audio is never stored")
    subject: Subject | None = None


class SubjectIn(StrictBody):
    subject: Subject


class LinkIn(StrictBody):
    ttl: int = Field(
        LINK_DEFAULT_S, ge=60, le=LINK_MAX_S, description="seconds the link works (max a week)"
    )
    subject: Subject | None = None


class LinkOut(BaseModel):
    url: str = Field(description="the participant's consent page: give it to them alone")
    participant: str
    expires: float


class JoinIn(StrictBody):
    url: str = Field(max_length=2048, examples=["janus://10.0.0.5:8088/1234?pin=secret"])
    subjects: dict[Annotated[str, Field(min_length=1, max_length=64)], Subject] = Field(
        default_factory=dict,
        max_length=256,
        description="display name -> your id for that person, attached as they are heard",
    )


class ParticipantRecordOut(BaseModel):
    participant: str
    sealed: int
    transcribed: int
    purged: dict[str, int]
    pending: int
    expired: int
    records: int
    anchored: int | None
    erased: bool
    missing: list[str]


class VerifyOut(BaseModel):
    meeting_id: str
    complete: bool = Field(
        description="every sealed segment stored, transcribed, purged or expired; every "
        "record authentic and anchored in the keyed audit chain"
    )
    participants: list[ParticipantRecordOut]
    missing: list[str] = Field(description="each missing or altered segment or record, named")
    notes: list[str]


class BotOut(BaseModel):
    meeting_id: str
    state: str
    target: str
    since: float
    reason: str
    participants: list[str]

    @classmethod
    def of(cls, b: BotStatus) -> BotOut:
        doc: dict[str, Any] = b.to_dict()
        return cls(**doc)


@router.post("", status_code=status.HTTP_201_CREATED, responses=problem_responses(400, 403))
def create(body: MeetingIn, tenant: Meetings, rt: RuntimeDep) -> MeetingOut:
    return MeetingOut.of(
        meetings.create_meeting(
            rt,
            tenant.id,
            body.transcription,
            body.language,
            body.translate,
            body.consent_mode,
        )
    )


@router.get("")
def list_(tenant: Viewer, rt: RuntimeDep) -> list[MeetingOut]:
    return [MeetingOut.of(m) for m in meetings.list_meetings(rt, tenant.id)]


class MeetingState(MeetingOut):
    notices: Literal["chat", "none"] = Field(
        description="whether the room carries the bot's written notices (its text chat)"
    )
    notices_why: str


@router.get("/{meeting_id}")
def get(meeting_id: MeetingId, tenant: Viewer, rt: RuntimeDep) -> MeetingState:
    """The meeting's policy, and whether its room can carry notices to the participants
    (a WHIP ingest cannot)."""
    m = meetings.get_meeting(rt, meeting_id, tenant.id)
    channel, why = meetings.notice_channel(rt, m)
    return MeetingState(
        **MeetingOut.of(m).model_dump(),
        notices=channel,  # type: ignore[arg-type]
        notices_why=why,
    )


@router.put("/{meeting_id}/transcription")
def set_transcription(
    meeting_id: MeetingId, body: Switch, tenant: Meetings, rt: RuntimeDep
) -> MeetingOut:
    """Switch transcription on or off, also mid-call; a running bot obeys within a second."""
    return MeetingOut.of(meetings.set_transcription(rt, meeting_id, body.enabled, tenant.id))


@router.put("/{meeting_id}/consent-mode")
def set_consent_mode(
    meeting_id: MeetingId, body: ConsentModeIn, tenant: Meetings, rt: RuntimeDep
) -> MeetingOut:
    """``notice`` or ``opt-in``, also mid-call: in opt-in nobody's audio is kept until they
    consent (by API, link or chat); capture obeys within a second."""
    return MeetingOut.of(meetings.set_consent_mode(rt, meeting_id, body.mode, tenant.id))


@router.put("/{meeting_id}/participants/{participant:path}/consent")
def set_consent(
    meeting_id: MeetingId,
    participant: Participant,
    body: Consent,
    tenant: Meetings,
    rt: RuntimeDep,
) -> MeetingOut:
    """A participant opts out of (or back into) transcription of their own audio."""
    return MeetingOut.of(
        meetings.set_consent(
            rt, meeting_id, participant, not body.transcribe, tenant.id, body.subject
        )
    )


@router.put("/{meeting_id}/participants/{participant:path}/subject")
def set_subject(
    meeting_id: MeetingId,
    participant: Participant,
    body: SubjectIn,
    tenant: Meetings,
    rt: RuntimeDep,
) -> MeetingOut:
    """Attach your own id for a participant, so an erasure by that id finds them here."""
    return MeetingOut.of(meetings.set_subject(rt, meeting_id, participant, body.subject, tenant.id))


@router.post(
    "/{meeting_id}/participants/{participant:path}/link",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400),
)
def consent_link(
    meeting_id: MeetingId,
    participant: Participant,
    body: LinkIn,
    request: Request,
    tenant: Meetings,
    rt: RuntimeDep,
) -> LinkOut:
    """A signed, expiring link to a page where this participant (and nobody else) opts out
    or in; no token is needed to open it, and its own token opens nothing else."""
    link = make_link(rt, meeting_id, participant, tenant.id, body.ttl, body.subject)
    url = str(request.url_for("consent_page", token=link.token))
    return LinkOut(url=url, participant=link.participant, expires=link.expires)


@router.get("/{meeting_id}/verify")
def verify(meeting_id: MeetingId, tenant: Reader, rt: RuntimeDep) -> VerifyOut:
    """Check the meeting's manifests with your key (purpose verify: no content is opened):
    every sealed segment accounted for, or each missing one named."""
    r = verify_meeting(rt, meeting_id, tenant.id)
    return VerifyOut(
        meeting_id=r.meeting_id,
        complete=r.complete,
        participants=[
            ParticipantRecordOut(
                participant=p.participant,
                sealed=p.sealed,
                transcribed=p.transcribed,
                purged=p.purged,
                pending=p.pending,
                expired=p.expired,
                records=p.records,
                anchored=p.anchored,
                erased=p.erased,
                missing=list(p.missing),
            )
            for p in r.participants
        ],
        missing=list(r.missing),
        notes=list(r.notes),
    )


@router.post(
    "/{meeting_id}/bot", status_code=status.HTTP_202_ACCEPTED, responses=problem_responses(400, 409)
)
def join(meeting_id: MeetingId, body: JoinIn, tenant: Meetings, rt: RuntimeDep) -> BotOut:
    """Send the bot; follow it with ``GET .../bot``. ``subjects`` attaches your ids to the
    participants by display name."""
    for name, subject in body.subjects.items():
        meetings.set_subject(rt, meeting_id, name, subject, tenant.id)
    return BotOut.of(bots.join_meeting(rt, meeting_id, body.url, tenant.id))


@router.get("/{meeting_id}/bot")
def bot(meeting_id: MeetingId, tenant: Viewer, rt: RuntimeDep) -> BotOut:
    return BotOut.of(bots.bot_status(rt, meeting_id, tenant.id))


@router.delete("/{meeting_id}/bot", status_code=status.HTTP_202_ACCEPTED)
def leave(meeting_id: MeetingId, tenant: Meetings, rt: RuntimeDep) -> BotOut:
    """Call the bot back: it flushes what policy allows and leaves."""
    return BotOut.of(bots.leave_meeting(rt, meeting_id, tenant.id))


@router.delete("/{meeting_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete(meeting_id: MeetingId, tenant: Admin, rt: RuntimeDep) -> Response:
    """Crypto-shred the meeting: its data keys are destroyed first, then every record."""
    meetings.delete_meeting(rt, meeting_id, tenant.id)
    return Response(status_code=204)


class Format(StrEnum):
    txt = "txt"
    srt = "srt"
    vtt = "vtt"
    json = "json"


MEDIA = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "json": "application/json",
}

_INT = {"type": "integer"}
#: what ``format=json`` returns (pipeline.formats.render): one object per segment
TRANSCRIPT_JSON: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": [
            "participant_id",
            "seq",
            "start_ms",
            "end_ms",
            "text",
            "words",
            "language",
            "translated",
            "speaker",
        ],
        "properties": {
            "participant_id": {"type": "string"},
            "seq": _INT,
            "start_ms": _INT,
            "end_ms": _INT,
            "text": {"type": "string"},
            "words": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["start_ms", "end_ms", "word", "probability"],
                    "properties": {
                        "start_ms": _INT,
                        "end_ms": _INT,
                        "word": {"type": "string"},
                        "probability": {"type": "number"},
                    },
                },
            },
            "language": {"type": ["string", "null"]},
            "translated": {"type": "boolean"},
            "speaker": {"type": "string"},
        },
    },
}


@router.get(
    "/{meeting_id}/transcript",
    response_class=Response,
    responses={
        200: {
            "content": {
                m.split(";")[0]: {"schema": TRANSCRIPT_JSON if f == "json" else {"type": "string"}}
                for f, m in MEDIA.items()
            },
            "description": "the transcript, opened for you (audited with purpose deliver)",
        },
        **problem_responses(403),
    },
)
def transcript(
    meeting_id: MeetingId, tenant: Reader, rt: RuntimeDep, format: Format = Format.txt
) -> Response:
    segments = read_transcript(rt, meeting_id, tenant.id)
    body = render(segments, format.value)
    record = verify_meeting(rt, meeting_id, tenant.id)
    return Response(
        body,
        media_type=MEDIA[format.value],
        headers={
            "Content-Disposition": f'attachment; filename="{meeting_id}.{format.value}"',
            "Cache-Control": "no-store",
            # complete, or how many segments are missing (GET .../verify names them)
            "X-Transcript-Complete": "true" if record.complete else "false",
            "X-Transcript-Missing": str(len(record.missing)),
            # tracks (one per person) or talking-events (a mixed room's speaker signal)
            "X-Transcript-Speakers": speakers_note(rt, meeting_id)[0],
        },
    )


#: ``[time, what, actor]`` events. Described without ``prefixItems`` (JSON Schema 2020-12
#: tuples), which OpenAPI tools widely mishandle (schemathesis 4 rejects the document)
Events = Annotated[
    list[tuple[float, str, str]],
    WithJsonSchema(
        {
            "type": "array",
            "description": "[time, what, actor], oldest first",
            "items": {
                "type": "array",
                "minItems": 3,
                "maxItems": 3,
                "items": {"type": ["number", "string"]},
            },
        }
    ),
]


class PrivacyOut(BaseModel):
    meeting_id: str
    transcription_now: bool
    switches: Events
    consent_changes: Events
    key_uses: dict[str, int]
    purged: dict[str, int]
    transcript_segments: int
    audio_pending: int
    audit_intact: bool
    audit_problems: list[str]
    interims_transcribed: int = Field(
        description="interim captions transcribed (shown live; never in the transcript)"
    )
    interims_purged: dict[str, int] = Field(
        description="reason -> interim captions whose sealed audio was dropped untranscribed "
        "(superseded by a newer one, transcription off, opted out, key revoked, too late, ...)"
    )
    interims_note: str = Field(description="what interim captions are and are not kept as")
    complete: bool = Field(description="every sealed segment accounted for (GET .../verify)")
    notices: Events = Field(
        description="each notice posted to the room, [time, 'text:join|on|off|mode|consent', "
        "actor]: the bot's written notices in the room's chat"
    )
    missing: list[str] = Field(description="each missing or altered segment, named")
    speakers: Literal["tracks", "talking-events"] = Field(
        description="where the speaker names come from: each participant's own audio track, "
        "or a mixed room's talking events (one mixed track; speech of several at once is "
        "under all their names)"
    )


@router.get("/{meeting_id}/privacy")
def privacy(meeting_id: MeetingId, tenant: Reader, rt: RuntimeDep) -> PrivacyOut:
    """When transcription was on, who opened what with which purpose, what was purged, and
    what became of the interim captions."""
    r = privacy_report(rt, meeting_id, tenant.id)
    return PrivacyOut(
        meeting_id=r.meeting_id,
        transcription_now=r.transcription_now,
        switches=list(r.switches),
        consent_changes=list(r.consent_changes),
        key_uses=r.key_uses,
        purged=r.purged,
        transcript_segments=r.transcript_segments,
        audio_pending=r.audio_pending,
        audit_intact=r.audit_intact,
        audit_problems=list(r.audit_problems),
        interims_transcribed=r.interims_transcribed,
        interims_purged=r.interims_purged,
        interims_note=INTERIMS_NOTE,
        complete=r.complete,
        missing=list(r.missing),
        notices=list(r.notices),
        speakers=r.speakers,  # type: ignore[arg-type]
    )
