"""Per-tenant quotas: the one place their rules live.

======================  ===========================================================  =======
setting                 what it bounds                                               default
======================  ===========================================================  =======
QUOTA_MEETINGS          meetings a tenant holds at once (created, not yet deleted     1000
                        or expired)
QUOTA_BOTS              bots a tenant has in meetings at once, across every           10
                        ``sealscribe bots`` process (counted in Redis)
QUOTA_PUBLISHERS        publishers one bot follows in a room; more are ignored        50
                        (and logged): a hostile meeting server can list thousands
QUOTA_RPS               API requests per second per tenant, across every API          50
                        process (a token bucket in Redis holding twice that)
======================  ===========================================================  =======

Each is ``SEALSCRIBE_`` + the name; 0 turns one off. Excess raises :class:`QuotaExceeded`
(HTTP 429 with ``Retry-After`` and a problem document; CLI exit 9), with a message that
names the setting. WHIP sessions (``SEALSCRIBE_WHIP_PER_*``), caption sockets and failed
authentications have limits of their own, next to what they bound.
"""

from __future__ import annotations

import logging
import math

from pipeline import faults
from pipeline.config import Settings
from pipeline.errors import QuotaExceeded
from pipeline.runtime import Runtime

__all__ = [
    "RETRY_COUNTED_S",
    "bots_limit",
    "bots_quota_exceeded",
    "check_meetings",
    "check_rate",
    "follows_publisher",
    "meetings_limit",
    "meetings_quota_exceeded",
]

log = logging.getLogger(__name__)

#: Retry-After for a quota on a count (meetings, bots): a hint, since only deleting a
#: meeting or calling a bot back frees one
RETRY_COUNTED_S = 30


def _limit(value: int) -> int:
    """The limit in force: the setting, or none at all with the ``quotas-off`` fault."""
    return 0 if faults.on("quotas-off") else value


def meetings_limit(rt: Runtime) -> int:
    return _limit(rt.settings.quota_meetings)


def bots_limit(rt: Runtime) -> int:
    return _limit(rt.settings.quota_bots)


def meetings_quota_exceeded(rt: Runtime) -> QuotaExceeded:
    return QuotaExceeded(
        f"the tenant holds {rt.settings.quota_meetings} meetings, its quota "
        "(SEALSCRIBE_QUOTA_MEETINGS): delete one first",
        retry_after=RETRY_COUNTED_S,
    )


def bots_quota_exceeded(rt: Runtime) -> QuotaExceeded:
    return QuotaExceeded(
        f"the tenant has {rt.settings.quota_bots} bots in meetings, its quota "
        "(SEALSCRIBE_QUOTA_BOTS): call one back first",
        retry_after=RETRY_COUNTED_S,
    )


def check_meetings(rt: Runtime, tenant_id: str) -> None:
    """Refuse early (before any key is made) when the tenant is at its meeting quota; the
    store checks again, atomically, when the meeting is stored."""
    limit = meetings_limit(rt)
    if limit and rt.store.meetings.count(tenant_id) >= limit:
        raise meetings_quota_exceeded(rt)


def check_rate(rt: Runtime, tenant_id: str) -> None:
    """Take one request from the tenant's bucket, shared by every API process; refuse with
    the seconds until the next one is there."""
    rate = _limit(rt.settings.quota_rps)
    if not rate:
        return
    wait = rt.store.quotas.take_request(tenant_id, rate, 2 * rate)
    if wait > 0:
        raise QuotaExceeded(
            f"more than {rate} requests per second (SEALSCRIBE_QUOTA_RPS): slow down",
            retry_after=max(1, math.ceil(wait)),
        )


def follows_publisher(settings: Settings, following: int) -> bool:
    """Whether a bot that follows ``following`` publishers in a room may follow one more."""
    limit = _limit(settings.quota_publishers)
    return not limit or following < limit
