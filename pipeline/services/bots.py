"""Sending the bot into a meeting and calling it back.

A join is a request in Redis that a ``sealscribe bots`` process carries out; the request is
refused up front if the URL is malformed, so the customer hears about a typo at once, and the
bot's progress (joining, in meeting, reconnecting, left, failed with a reason) is read back
with :func:`bot_status`.
"""

from __future__ import annotations

from keys.errors import KeyRevoked
from pipeline.errors import Conflict, NotFound
from pipeline.models import BotStatus
from pipeline.runtime import Runtime

__all__ = ["bot_status", "join_meeting", "leave_meeting"]


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
    status = rt.store.bots.request_join(meeting.id, url, described)
    rt.keys.audit.record(
        meeting.tenant_id, "bot", actor=rt.actor, outcome="join", meeting=meeting.id
    )
    return status


def leave_meeting(rt: Runtime, meeting_id: str, tenant_id: str | None = None) -> BotStatus:
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    if rt.store.bots.get(meeting.id) is None:
        raise NotFound(f"no bot was sent to meeting {meeting.id}")
    rt.store.bots.request_leave(meeting.id)
    rt.keys.audit.record(
        meeting.tenant_id, "bot", actor=rt.actor, outcome="leave", meeting=meeting.id
    )
    return bot_status(rt, meeting.id)


def bot_status(rt: Runtime, meeting_id: str, tenant_id: str | None = None) -> BotStatus:
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    status = rt.store.bots.get(meeting.id)
    if status is None:
        raise NotFound(f"no bot was sent to meeting {meeting.id}")
    return status
