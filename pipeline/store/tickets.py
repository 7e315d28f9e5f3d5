"""Caption tickets: short-lived, single-use, meeting-scoped stand-ins for a token in a URL.

Browsers cannot set headers on a WebSocket, and URLs end up in proxy logs, so a long-lived
token never goes into one. A ticket is issued to a caller who holds a token (its SHA-256 is
kept with the ticket, so revoking the token also ends sockets opened with its tickets), lives
:data:`TICKET_TTL` seconds, and is taken once (``GETDEL``): a second use, or a use after it
lapsed, finds nothing. Only the ticket's SHA-256 is stored.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from pipeline import faults
from pipeline.errors import AuthenticationFailed
from pipeline.store import schema
from pipeline.store.connection import Redis, as_str, redis_errors

__all__ = ["TICKET_PREFIX", "TICKET_TTL", "Ticket", "TicketStore"]

TICKET_PREFIX = "ssc_"
#: seconds a caption ticket can be used in
TICKET_TTL = 60


@dataclass(frozen=True)
class Ticket:
    """What a ticket was issued for: whose token asked, for which meeting."""

    tenant_id: str
    meeting_id: str
    #: SHA-256 of the token that asked for it
    token_digest: str


class TicketStore:
    def __init__(self, r: Redis) -> None:
        self.r = r

    @redis_errors
    def issue(self, ticket: Ticket, ttl: int = TICKET_TTL) -> str:
        """A new ticket for ``ticket``'s meeting, valid ``ttl`` seconds (shown once)."""
        raw = TICKET_PREFIX + secrets.token_urlsafe(32)
        doc = {
            "tenant": ticket.tenant_id,
            "meeting": ticket.meeting_id,
            "token": ticket.token_digest,
        }
        self.r.set(schema.ticket(raw), json.dumps(doc, separators=(",", ":")), ex=ttl)
        return raw

    @redis_errors
    def take(self, raw: str) -> Ticket:
        """The ticket's grant, removing it in the same step; :class:`AuthenticationFailed`
        for a ticket that is malformed, unknown, used or expired."""
        if not isinstance(raw, str) or not raw.startswith(TICKET_PREFIX) or len(raw) > 200:
            raise AuthenticationFailed("the caption ticket is malformed")
        key = schema.ticket(raw)
        found = self.r.get(key) if faults.on("caption-ticket-reusable") else self.r.getdel(key)
        if found is None:
            raise AuthenticationFailed("the caption ticket is not valid (used, expired or unknown)")
        doc = json.loads(as_str(found))
        return Ticket(doc["tenant"], doc["meeting"], doc["token"])
