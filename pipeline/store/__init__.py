"""The sealed store on Redis. ``schema`` owns every key name; the rest owns one concept each.

``Store`` bundles them around one Redis client.
"""

from __future__ import annotations

from pipeline.store import schema
from pipeline.store.attempts import AuthAttempts
from pipeline.store.audit import RedisAuditStore
from pipeline.store.bots import BotStore
from pipeline.store.connection import Durable, Redis, connect
from pipeline.store.leases import CappedLeases
from pipeline.store.meetings import MeetingStore
from pipeline.store.quotas import QuotaStore
from pipeline.store.segments import SegmentStore
from pipeline.store.tenants import TenantStore
from pipeline.store.tickets import TicketStore
from pipeline.store.webhooks import WebhookStore

__all__ = ["Store"]


class Store:
    def __init__(
        self,
        r: Redis,
        audio_ttl: int = 3600,
        transcript_ttl: int = 30 * 24 * 3600,
        durable: Durable | None = None,
    ) -> None:
        self.redis = r
        #: how writes that must outlive the primary are made (see :class:`Durable`)
        self.durable = durable if durable is not None else Durable(r)
        self.tenants = TenantStore(r, self.durable)
        self.tokens = self.tenants.tokens
        self.tickets = TicketStore(r)
        self.attempts = AuthAttempts(r)
        #: caption sockets open, per meeting and tenant
        self.sockets = CappedLeases(r, schema.sockets_meeting, schema.sockets_tenant)
        self.meetings = MeetingStore(r, self.durable)
        self.segments = SegmentStore(r, audio_ttl, transcript_ttl, self.durable)
        #: interim captions: the newest sealed audio and text of utterances in progress
        self.interims = self.segments.interims
        self.audit = RedisAuditStore(r, self.durable)
        self.bots = BotStore(r)
        self.quotas = QuotaStore(r)
        #: WHIP sessions held, per meeting and tenant
        self.whip = CappedLeases(r, schema.whip_meeting, schema.whip_tenant)
        #: webhook endpoints, their outbox and delivery log
        self.webhooks = WebhookStore(r)

    @classmethod
    def from_url(
        cls,
        url: str,
        audio_ttl: int = 3600,
        transcript_ttl: int = 30 * 24 * 3600,
        wait_replicas: int = 0,
        wait_ms: int = 1000,
    ) -> Store:
        """A store on ``url``; ``wait_replicas``: see :class:`Durable`."""
        r = connect(url)
        return cls(r, audio_ttl, transcript_ttl, Durable(r, url, wait_replicas, wait_ms))
