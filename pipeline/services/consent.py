"""Participants decide for themselves: signed, expiring links scoped to one participant of one
meeting, which open a small consent page where that person opts out or in.

A link's token is ``sl_`` + base64url(JSON: tenant, meeting, participant, expiry) + ``.`` +
base64url(MAC). The MAC is made with a subkey of the meeting's own audio data key
(:func:`keys.macs.subkey`), so only a process that may unwrap that key (audited, purpose
``verify``) can make or check one; a forged, altered or expired token, or one for a meeting
that no longer exists, is refused before anything changes. The token is no API token: it
opens this one page, for this one participant, and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass

from keys.macs import mac_fields, mac_fields_valid, subkey
from keys.types import KeyUse, Purpose
from pipeline import ids
from pipeline.datakeys import data_key
from pipeline.errors import AuthenticationFailed, InvalidInput, NotFound
from pipeline.models import Meeting
from pipeline.runtime import Runtime
from pipeline.services.meetings import set_consent, set_subject

__all__ = [
    "LINK_DEFAULT_S",
    "LINK_MAX_S",
    "ConsentLink",
    "LinkRefused",
    "apply_link",
    "check_link",
    "make_link",
]

#: how long a link may live: a day by default, a week at most
LINK_DEFAULT_S = 86_400
LINK_MAX_S = 7 * 86_400
_PREFIX = "sl_"


class LinkRefused(AuthenticationFailed):
    """A consent link that is forged, altered, expired, or for a meeting that is gone (one
    answer for all, so a guesser learns nothing)."""


@dataclass(frozen=True)
class ConsentLink:
    token: str
    meeting: Meeting
    participant: str
    expires: float


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _link_key(rt: Runtime, meeting: Meeting) -> bytes:
    key = data_key(rt, meeting, KeyUse.AUDIO, Purpose.VERIFY)
    return subkey(key, b"sealscribe.consent-link.v1", meeting.tenant_id, meeting.id)


def make_link(
    rt: Runtime,
    meeting_id: str,
    participant_id: str,
    tenant_id: str | None = None,
    ttl: int = LINK_DEFAULT_S,
    subject: str | None = None,
) -> ConsentLink:
    """A consent link for ``participant_id`` of the meeting, valid for ``ttl`` seconds."""
    participant_id = ids.participant_id(participant_id)
    if isinstance(ttl, bool) or not 60 <= ttl <= LINK_MAX_S:
        raise InvalidInput(f"a link lives from 60 s to {LINK_MAX_S} s (a week)")
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    if subject is not None:
        set_subject(rt, meeting.id, participant_id, subject, tenant_id)
    expires = int(time.time()) + ttl
    body = json.dumps(
        {"t": meeting.tenant_id, "m": meeting.id, "p": participant_id, "e": expires},
        separators=(",", ":"),
    ).encode()
    mac = mac_fields(_link_key(rt, meeting), body)
    token = f"{_PREFIX}{_b64(body)}.{_b64(base64.b64decode(mac))}"
    rt.keys.audit.record(
        meeting.tenant_id,
        "consent-link",
        actor=rt.actor,
        outcome=f"expires-{expires}",
        meeting=meeting.id,
        participant=participant_id,
    )
    return ConsentLink(token, meeting, participant_id, float(expires))


def check_link(rt: Runtime, token: str) -> ConsentLink:
    """The link's meeting and participant; :class:`LinkRefused` for anything else."""
    refused = LinkRefused(
        "this consent link is not valid: it was altered, has expired, or its meeting no "
        "longer exists"
    )
    if not isinstance(token, str) or not token.startswith(_PREFIX) or len(token) > 1024:
        raise refused
    try:
        encoded, _, tag = token[len(_PREFIX) :].partition(".")
        body = _unb64(encoded)
        doc = json.loads(body)
        tenant_id, meeting_id = str(doc["t"]), str(doc["m"])
        participant, expires = str(doc["p"]), int(doc["e"])
        mac = base64.b64encode(_unb64(tag)).decode()
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise refused from None
    if expires < time.time():
        raise refused
    try:
        meeting = rt.store.meetings.get(meeting_id, tenant_id)
        key = _link_key(rt, meeting)
    except (NotFound, InvalidInput):
        raise refused from None
    if not mac_fields_valid(key, mac, body):
        raise refused
    return ConsentLink(token, meeting, participant, float(expires))


def apply_link(rt: Runtime, token: str, transcribe: bool) -> tuple[str, Meeting]:
    """The participant's own choice through their link: opt out, or in (consent); returns
    the participant and the meeting as it is now."""
    link = check_link(rt, token)
    meeting = set_consent(
        rt, link.meeting.id, link.participant, not transcribe, link.meeting.tenant_id, via="link"
    )
    return link.participant, meeting
