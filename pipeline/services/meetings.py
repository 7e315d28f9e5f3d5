"""Meeting services: create, the transcription switch, consent, data keys, delete.

Rules live here once: transcription is off unless asked for; a tenant only ever sees its own
meetings (anything else is :class:`NotFound`); a tenant holds at most its quota of meetings;
deleting shreds keys before records, and a worker then rotates and retires the tenant key
(:func:`finish_shreds`), retried by the beat until it is done.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from keys.errors import KeyRevoked
from keys.types import DataKey, KeyContext, KeyUse, Purpose
from pipeline import faults, ids
from pipeline.asr import is_multilingual
from pipeline.errors import OURS, InvalidInput, NotFound
from pipeline.models import CONSENT_MODES, CONSENT_NOTICE, BotState, Meeting
from pipeline.queue import enqueue_shred
from pipeline.runtime import Runtime
from pipeline.services import quotas, webhooks
from pipeline.store.meetings import MeetingStore

__all__ = [
    "create_meeting",
    "delete_meeting",
    "finish_shreds",
    "get_meeting",
    "list_meetings",
    "notice_channel",
    "retry_shreds",
    "set_consent",
    "set_consent_mode",
    "set_subject",
    "set_transcription",
    "shred_pending",
    "subject_id",
    "wait_for_shred",
]

log = logging.getLogger(__name__)


_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")


def create_meeting(
    rt: Runtime,
    tenant_id: str,
    transcription: bool = False,
    language: str | None = None,
    translate: bool = False,
    consent_mode: str = CONSENT_NOTICE,
) -> Meeting:
    """A new meeting with fresh audio and transcript data keys, wrapped by the tenant key.

    Transcription is **off** unless ``transcription=True``. ``consent_mode`` is ``notice``
    (everyone transcribed unless they opt out) or ``opt-in`` (nobody until they consent).
    ``language`` (ISO 639-1, e.g. ``fr``) skips detection; ``translate`` gives English text
    for speech in any language.
    Both need a multilingual model (``SEALSCRIBE_MODEL=base``) unless the language is
    English."""
    if language is not None and not _LANGUAGE_RE.match(language):
        raise InvalidInput(
            f"language must be an ISO 639-1 code such as 'en' or 'fr', got {language!r}"
        )
    if (translate or language not in (None, "en")) and not is_multilingual(rt.settings.model):
        raise InvalidInput(
            f"the model {rt.settings.model!r} knows English only; other "
            "languages and translation need SEALSCRIBE_MODEL=base"
        )
    consent_mode = _consent_mode(consent_mode)
    if rt.store.tenants.get(tenant_id).revoked:  # NotFound for an unknown tenant, too
        raise KeyRevoked(f"the key of tenant {tenant_id} was revoked")
    quotas.check_meetings(rt, tenant_id)  # before any key is made
    meeting_id = MeetingStore.new_id()
    wrapped = {
        use: rt.keys.wrap(
            KeyContext(tenant_id, meeting_id, use), DataKey.generate(), Purpose.TRANSCRIBE, rt.actor
        )
        for use in KeyUse
    }
    meeting = rt.store.meetings.create(
        meeting_id,
        tenant_id,
        transcription,
        wrapped,
        language,
        translate,
        limit=quotas.meetings_limit(rt),
        consent_mode=consent_mode,
    )
    if meeting is None:  # another request took the last place meanwhile
        raise quotas.meetings_quota_exceeded(rt)
    return meeting


#: how the room hears the bot's written notices
NOTICES_CHAT = "chat"
NOTICES_NONE = "none"


def notice_channel(rt: Runtime, meeting: Meeting) -> tuple[str, str]:
    """Whether the meeting's room can carry the bot's written notices, and why: ("chat",
    how) where the bot is in a room with a text chat, else ("none", why not)."""
    whip, _ = rt.store.whip.count(meeting.tenant_id, meeting.id)
    bot = rt.store.bots.get(meeting.id)
    there = bot is not None and bot.state not in (BotState.LEFT, BotState.FAILED)
    if bot is not None and there and "textroom=" in bot.target:
        return NOTICES_CHAT, "the bot posts notices to the room's text chat"
    if whip:
        return NOTICES_NONE, "WHIP ingest has no way to carry a notice to the participants"
    if there:
        return NOTICES_NONE, "the room has no text chat (add ?textroom=ID to the join URL)"
    return NOTICES_NONE, "no room is connected"


def get_meeting(rt: Runtime, meeting_id: str, tenant_id: str | None = None) -> Meeting:
    return rt.store.meetings.get(meeting_id, tenant_id)


def list_meetings(rt: Runtime, tenant_id: str) -> list[Meeting]:
    rt.store.tenants.get(tenant_id)
    return rt.store.meetings.list(tenant_id)


def set_transcription(
    rt: Runtime, meeting_id: str, on: bool, tenant_id: str | None = None
) -> Meeting:
    """Switch transcription for a meeting, also mid-call; effective for the next segment."""
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    rt.store.meetings.set_transcription(meeting_id, on)
    rt.keys.audit.record(
        meeting.tenant_id,
        "transcription",
        actor=rt.actor,
        outcome="on" if on else "off",
        meeting=meeting_id,
    )
    meeting = rt.store.meetings.get(meeting_id)
    webhooks.transcription_switched(rt, meeting)
    return meeting


def _consent_mode(mode: str) -> str:
    if mode not in CONSENT_MODES:
        raise InvalidInput(f"the consent mode is one of {', '.join(CONSENT_MODES)}")
    return mode


def set_consent_mode(
    rt: Runtime, meeting_id: str, mode: str, tenant_id: str | None = None
) -> Meeting:
    """``notice`` or ``opt-in``, also mid-call: in ``opt-in`` nobody's audio is kept until
    they consent; capture hears the change within a second."""
    mode = _consent_mode(mode)
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    rt.store.meetings.set_consent_mode(meeting_id, mode)
    rt.keys.audit.record(
        meeting.tenant_id, "consent-mode", actor=rt.actor, outcome=mode, meeting=meeting_id
    )
    return rt.store.meetings.get(meeting_id)


def set_consent(
    rt: Runtime,
    meeting_id: str,
    participant_id: str,
    opted_out: bool,
    tenant_id: str | None = None,
    subject: str | None = None,
    via: str | None = None,
) -> Meeting:
    """A participant opts out of (or consents to, or back into) having their own audio
    transcribed; with ``subject``, the tenant's id for that person is attached too (see
    :func:`set_subject`). ``via`` names how, when the participant asked themselves (a
    ``link``, or a ``chat`` command): the audit entry's actor says so."""
    participant_id = ids.participant_id(participant_id)
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    if subject is not None:
        set_subject(rt, meeting_id, participant_id, subject, tenant_id)
    rt.store.meetings.set_opt_out(meeting_id, participant_id, opted_out)
    rt.keys.audit.record(
        meeting.tenant_id,
        "consent",
        actor=rt.actor if via is None else f"participant-{via}@{rt.actor}",
        outcome=f"{participant_id}:{'opted-out' if opted_out else 'opted-in'}",
        meeting=meeting_id,
        participant=participant_id,
    )
    webhooks.consent_changed(rt, meeting, participant_id, opted_out)
    return rt.store.meetings.get(meeting_id)


_SUBJECT_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


def subject_id(subject: str) -> str:
    """A tenant's subject id for a person: 1-128 letters, digits and ``. _ : @ -``."""
    if not isinstance(subject, str) or not _SUBJECT_RE.match(subject):
        raise InvalidInput("a subject id is 1-128 letters, digits and . _ : @ -")
    return subject


def set_subject(
    rt: Runtime, meeting_id: str, participant_id: str, subject: str, tenant_id: str | None = None
) -> Meeting:
    """Attach the tenant's own id for the person behind ``participant_id`` (their CRM or
    user id), so a later erasure by that id finds them in this meeting."""
    participant_id = ids.participant_id(participant_id)
    subject = subject_id(subject)
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    rt.store.meetings.set_subject(meeting_id, participant_id, subject)
    rt.keys.audit.record(
        meeting.tenant_id,
        "subject",
        actor=rt.actor,
        meeting=meeting_id,
        participant=participant_id,
    )
    return meeting


def delete_meeting(rt: Runtime, meeting_id: str, tenant_id: str | None = None) -> Meeting:
    """Crypto-shred a meeting and delete its records, then have a worker finish the job.

    In the request, at once: the wrapped data keys are destroyed (marked before and after
    as waiting for the rest: see :meth:`MeetingStore.shred`), then every record; the
    meeting is gone from the tenant's view and its content unopenable. Because a backup of
    Redis taken earlier still holds copies of the wrapped keys, the tenant key must then be
    rotated, every other meeting's keys rewrapped, and the old versions retired: a worker
    does that (:func:`finish_shreds`), and the beat retries until it is done (:func:`retry_shreds`),
    so a KMS outage delays it but cannot leave it half done. :func:`shred_pending` says
    whether it is still to do."""
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    rt.store.meetings.shred(meeting)
    rt.keys.audit.record(meeting.tenant_id, "shred", actor=rt.actor, meeting=meeting.id)
    rt.store.meetings.delete(meeting)  # also tells a bot capturing it to stop
    rt.store.bots.delete(meeting.id)
    webhooks.meeting_deleted(rt, meeting)
    if faults.on("shred-in-request"):
        finish_shreds(rt, meeting.tenant_id)  # every other meeting rewrapped in the request
        return meeting
    try:
        enqueue_shred(meeting.tenant_id)
    except Exception as exc:  # the mark stays: the beat's shred-retry finishes it
        log.warning(
            "could not queue the key rotation after deleting meeting %s (%s); the beat retries it",
            meeting.id,
            type(exc).__name__,
        )
    return meeting


def finish_shreds(rt: Runtime, tenant_id: str) -> int:
    """Rotate and retire the tenant key for every meeting of the tenant deleted so far, then
    clear their marks; returns how many. Run again (a retry) after any failure: the marks
    stay until the old versions are retired. One rotation serves every delete before it."""
    pending = rt.store.meetings.shred_marks(tenant_id)
    if not pending:
        return 0
    if not faults.on("no-rotate-on-delete"):  # else the old versions stay: backups open
        try:
            tenant = rt.store.tenants.get(tenant_id)
        except NotFound:
            tenant = None  # erased since: its key is gone altogether
        if tenant is not None and not tenant.revoked:
            try:
                report = rt.keys.rotate(tenant_id, rt.actor)
                rt.keys.retire_below(tenant_id, report.primary_version, rt.actor)
                webhooks.key_changed(
                    rt,
                    tenant_id,
                    "rotated",
                    primary_version=report.primary_version,
                    rewrapped=report.rewrapped,
                )
                webhooks.key_changed(rt, tenant_id, "retired", below=report.primary_version)
            except KeyRevoked:
                pass  # a revoked key opens nothing already
    rt.store.meetings.shreds_done(pending)
    return len(pending)


def retry_shreds(rt: Runtime, older_than: float) -> int:
    """Finish every shred marked more than ``older_than`` seconds ago (the beat's job: a
    worker's task failed or was lost); returns how many were finished. One tenant's failure
    (its KMS still down) does not hold up the others."""
    tenants = sorted(
        {t for t, _ in rt.store.meetings.pending_shreds(before=time.time() - older_than)}
    )
    done = 0
    for tenant_id in tenants:
        try:
            done += finish_shreds(rt, tenant_id)
        except OURS as exc:
            log.warning(
                "the key rotation after a meeting delete of tenant %s failed again (%s); "
                "retrying later",
                tenant_id,
                type(exc).__name__,
            )
    return done


def shred_pending(rt: Runtime, meeting: Meeting) -> bool:
    """Whether the deleted ``meeting``'s tenant key still waits for rotation and retirement."""
    return rt.store.meetings.shred_pending(meeting.tenant_id, meeting.id)


def wait_for_shred(
    rt: Runtime,
    meeting: Meeting,
    timeout: float,
    progress: Callable[[float], None] | None = None,
    poll: float = 0.2,
) -> bool:
    """Wait up to ``timeout`` seconds for a worker to finish shredding the deleted
    ``meeting``; True if it did. ``progress`` is called with the seconds waited so far."""
    start = time.monotonic()
    while shred_pending(rt, meeting):
        waited = time.monotonic() - start
        if waited >= timeout:
            return False
        if progress is not None:
            progress(waited)
        time.sleep(poll)
    return True
