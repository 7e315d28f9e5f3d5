"""Sending the bot into a meeting and calling it back.

A join is a request in Redis that a ``sealscribe bots`` process carries out; the request is
refused up front if the URL is malformed, so the customer hears about a typo at once, and the
bot's progress (joining, in meeting, reconnecting, left, failed with a reason) is read back
with :func:`bot_status`.

A tenant has at most its quota of bots in meetings (``SEALSCRIBE_QUOTA_BOTS``), counted in
Redis across every bot service. The join URL, which may carry a room pin and the meeting
server's API secret, is sealed under the meeting's audio data key before it is stored
(:func:`seal_join_url`) and opened only by the bot service (:func:`open_join_url`).
"""

from __future__ import annotations

from keys.errors import KeyRevoked
from keys.types import KeyUse, Purpose
from pipeline import faults
from pipeline.datakeys import data_key
from pipeline.errors import Conflict, NotFound
from pipeline.models import BotStatus, Meeting
from pipeline.runtime import Runtime
from pipeline.sealing import open_join_target, seal_join_target
from pipeline.services import quotas, webhooks

__all__ = ["bot_status", "join_meeting", "leave_meeting", "open_join_url", "seal_join_url"]


def join_meeting(rt: Runtime, meeting_id: str, url: str, tenant_id: str | None = None) -> BotStatus:
    from pipeline.bot.connectors import connector_for  # the bot stack, only when joining

    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    described = connector_for(url).describe()  # InvalidInput names what is wrong
    if rt.store.tenants.get(meeting.tenant_id).revoked:
        raise KeyRevoked(
            f"the key of tenant {meeting.tenant_id} was revoked: nothing can be captured"
        )
    current = rt.store.bots.get(meeting.id)
    if current is not None and not current.state.final and rt.store.bots.wanted(meeting.id):
        raise Conflict(
            f"a bot is already {current.state.value} for meeting {meeting.id}; call it back first"
        )
    sealed = seal_join_url(rt, meeting, url)
    status = rt.store.bots.request_join(
        meeting.id, meeting.tenant_id, sealed, described, limit=quotas.bots_limit(rt)
    )
    if status is None:
        raise quotas.bots_quota_exceeded(rt)
    rt.keys.audit.record(
        meeting.tenant_id, "bot", actor=rt.actor, outcome="join", meeting=meeting.id
    )
    webhooks.bot_state_changed(rt, meeting.id, status.state.value)
    return status


def leave_meeting(rt: Runtime, meeting_id: str, tenant_id: str | None = None) -> BotStatus:
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    before = rt.store.bots.get(meeting.id)
    if before is None:
        raise NotFound(f"no bot was sent to meeting {meeting.id}")
    rt.store.bots.request_leave(meeting.id)
    rt.keys.audit.record(
        meeting.tenant_id, "bot", actor=rt.actor, outcome="leave", meeting=meeting.id
    )
    status = bot_status(rt, meeting.id)
    if status.state.final and not before.state.final:  # no bot ran it: it left here
        webhooks.bot_state_changed(rt, meeting.id, status.state.value, status.reason)
    return status


def bot_status(rt: Runtime, meeting_id: str, tenant_id: str | None = None) -> BotStatus:
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    status = rt.store.bots.get(meeting.id)
    if status is None:
        raise NotFound(f"no bot was sent to meeting {meeting.id}")
    return status


def seal_join_url(rt: Runtime, meeting: Meeting, url: str) -> bytes:
    """The join URL sealed under the meeting's audio data key (unwrapped with purpose
    ``transcribe``, audited): what Redis keeps while the bot runs."""
    if faults.on("join-secret-in-clear"):
        return url.encode()  # pin and API secret readable by anyone who reads Redis
    key = data_key(rt, meeting, KeyUse.AUDIO, Purpose.TRANSCRIBE)
    return seal_join_target(key, meeting.tenant_id, meeting.id, url)


def open_join_url(rt: Runtime, meeting: Meeting, sealed: bytes) -> str:
    """Open a join URL sealed by :func:`seal_join_url` (the bot service alone calls this).

    Raises:
        KeyRevoked: the tenant revoked its key. NotFound: the meeting was deleted.
        keys.errors.InvalidSeal: it is not this meeting's join URL."""
    if faults.on("join-secret-in-clear"):
        return sealed.decode()
    key = data_key(rt, meeting, KeyUse.AUDIO, Purpose.TRANSCRIBE)
    return open_join_target(key, meeting.tenant_id, meeting.id, sealed)
