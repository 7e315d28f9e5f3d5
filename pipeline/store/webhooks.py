"""Webhook endpoints, their outbox and their delivery log in Redis.

An endpoint belongs to one tenant and holds its URL, the events it wants, its signing secret
(sealed by :mod:`pipeline.services.webhooks`: only ciphertext reaches this module) and its
health (failing since, disabled). Each event meant for it becomes a message here, kept in a
bounded per-endpoint hash, and its id goes to the end of one of the endpoint's *streams*: a
meeting's events share the meeting's stream, tenant-wide events share ``-``. A stream is
delivered head first, one message at a time under a lease, so a receiver sees each meeting's
events in order; the stream's next try time sits in one due set that the beat sweeps.

Messages hold ids, state names and counts only; the log holds outcomes and status codes.

An endpoint's keys share its hash tag (one slot on a Redis Cluster); the tenant's list of
endpoints is in the tenant's slot, and the due set in a slot of its own. So a write that
touches two of those goes in single-slot steps, ordered as :mod:`pipeline.store.schema`
says: an index entry (the tenant's set, the due set) is added before what it points at and
removed after, so a crash between steps leaves at most an entry that points at nothing.
Readers skip such an entry and drop it; a reader's drop and a writer's steps can interleave,
so a reader checks the target again after dropping (and puts the entry back if it appeared),
and a writer adds its entry again after writing the target: whichever goes last leaves the
entry in place.
"""

from __future__ import annotations

import builtins
import json
import secrets
import time
from dataclasses import dataclass, field

from pipeline.store import schema
from pipeline.store.connection import Redis, as_str, redis_errors

__all__ = ["TENANT_STREAM", "Attempt", "Endpoint", "Message", "WebhookStore"]

#: the stream of events that belong to no meeting (keys, retention, audit heads)
TENANT_STREAM = "-"
#: messages kept per endpoint (waiting or recently sent, for replay); older ones go
MAX_MESSAGES = 2000
#: attempts kept in an endpoint's delivery log
MAX_LOG = 500

# Put a message in the outbox (the endpoint's slot): body in the endpoint's hash, id at the end
# of its stream. The recent list bounds the hash; a trimmed id's body goes (:meth:`head`
# then drops the id from its stream). The stream's entry in the due set (another slot) is
# written around this, by :meth:`WebhookStore.enqueue`. KEYS: msgs, recent, stream list,
# streams set. ARGV: msg id, body, stream, max messages.
_ENQUEUE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[3])
redis.call('LPUSH', KEYS[2], ARGV[1])
local old = redis.call('LRANGE', KEYS[2], tonumber(ARGV[4]), -1)
for _, id in ipairs(old) do redis.call('HDEL', KEYS[1], id) end
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
return #old
"""
# The head was delivered (or dropped): pop it iff it is still the head; an empty stream
# leaves the endpoint's streams (and then, another slot, the due set: :meth:`done`).
# KEYS: stream list, streams set, tries. ARGV: msg id, stream.
_DONE = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LPOP', KEYS[1]) end
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
  return 0
end
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


@dataclass(frozen=True)
class Endpoint:
    """One webhook endpoint of a tenant (never its secret in the clear)."""

    id: str
    tenant_id: str
    url: str
    events: tuple[str, ...]
    created: float
    #: why it was disabled ("" while enabled)
    disabled: str = ""
    disabled_at: float = 0.0
    #: when its deliveries started failing without a success since (0: healthy)
    failing_since: float = 0.0
    #: the signing secret, sealed (base64 text)
    sealed_secret: str = field(default="", repr=False)
    #: the secret it replaced, sealed, still signed with until ``previous_until``
    sealed_previous: str = field(default="", repr=False)
    previous_until: float = 0.0
    #: bumped by each rotation: the sealed secret is bound to it
    secret_generation: int = 0

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events


@dataclass(frozen=True)
class Message:
    """An event as one endpoint receives it: its id and the JSON body (ids only)."""

    id: str
    stream: str
    body: str


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt in an endpoint's log."""

    message_id: str
    event: str
    meeting_id: str
    at: float
    attempt: int
    #: delivered, failed, refused (egress policy), disabled
    outcome: str
    #: the receiver's HTTP status (0: no answer)
    status: int = 0
    #: why it failed, in generic words (never the receiver's body)
    error: str = ""
    #: when it is tried again (0: not)
    next_try: float = 0.0


def _member(endpoint_id: str, stream: str) -> str:
    return f"{endpoint_id}/{stream}"


class WebhookStore:
    def __init__(self, r: Redis) -> None:
        self.r = r
        self._enqueue = r.register_script(_ENQUEUE)
        self._done = r.register_script(_DONE)
        self._release = r.register_script(_RELEASE)
        self._renew = r.register_script(_RENEW)

    # -- endpoints -----------------------------------------------------------------------

    @staticmethod
    def new_id() -> str:
        return "wh_" + secrets.token_hex(8)

    @staticmethod
    def new_message_id() -> str:
        return "msg_" + secrets.token_hex(12)

    @redis_errors
    def create(self, endpoint: Endpoint) -> None:
        # Two slots (the tenant's index, the endpoint's hash): the index entry first, so a
        # crash in between leaves an id that points at nothing (list() skips and drops it),
        # never an endpoint its tenant cannot list; and again after, in case a list() found
        # the first entry without its endpoint and dropped it meanwhile.
        index = schema.tenant_webhooks(endpoint.tenant_id)
        self.r.sadd(index, endpoint.id)
        self.r.hset(
            schema.webhook(endpoint.id),
            mapping={
                "tenant": endpoint.tenant_id,
                "url": endpoint.url,
                "events": ",".join(endpoint.events),
                "created": repr(endpoint.created),
                "secret": endpoint.sealed_secret,
                "generation": endpoint.secret_generation,
                "disabled": "",
                "failing_since": "0",
            },
        )
        self.r.sadd(index, endpoint.id)

    @redis_errors
    def count(self, tenant_id: str) -> int:
        """The tenant's endpoints (those that exist: an id left by a crash does not count)."""
        return len(self.list(tenant_id))

    @redis_errors
    def get(self, endpoint_id: str) -> Endpoint | None:
        raw = self.r.hgetall(schema.webhook(endpoint_id))
        if not raw or b"tenant" not in raw:
            return None
        d = {as_str(k): as_str(v) for k, v in raw.items()}
        return Endpoint(
            id=endpoint_id,
            tenant_id=d["tenant"],
            url=d["url"],
            events=tuple(e for e in d.get("events", "").split(",") if e),
            created=float(d.get("created", "0")),
            disabled=d.get("disabled", ""),
            disabled_at=float(d.get("disabled_at", "0") or 0),
            failing_since=float(d.get("failing_since", "0") or 0),
            sealed_secret=d.get("secret", ""),
            sealed_previous=d.get("previous", ""),
            previous_until=float(d.get("previous_until", "0") or 0),
            secret_generation=int(d.get("generation", "0") or 0),
        )

    @redis_errors
    def list(self, tenant_id: str) -> builtins.list[Endpoint]:
        """The tenant's endpoints, oldest first. An id in the tenant's index whose endpoint
        is gone (a crash between the steps of :meth:`create` or :meth:`delete`) is skipped
        and dropped."""
        index = schema.tenant_webhooks(tenant_id)
        ids = sorted(as_str(e) for e in self.r.smembers(index))
        found = {e: self.get(e) for e in ids}
        gone = [e for e, endpoint in found.items() if endpoint is None]
        if gone:
            self.r.srem(index, *gone)
            # a create() between its two steps: its endpoint exists now, so its entry stays
            back = [e for e in gone if self.r.hexists(schema.webhook(e), "tenant")]
            if back:
                self.r.sadd(index, *back)
        return sorted((e for e in found.values() if e is not None), key=lambda e: (e.created, e.id))

    @redis_errors
    def set_secret(
        self, endpoint_id: str, sealed: str, generation: int, previous: str, until: float
    ) -> None:
        self.r.hset(
            schema.webhook(endpoint_id),
            mapping={
                "secret": sealed,
                "generation": generation,
                "previous": previous,
                "previous_until": repr(until),
            },
        )

    @redis_errors
    def mark_failing(self, endpoint_id: str, since: float) -> float:
        """Record that deliveries fail from ``since`` on (kept if already failing); returns
        when the failures started."""
        key = schema.webhook(endpoint_id)
        current = float(as_str(self.r.hget(key, "failing_since") or b"0") or 0)
        if current:
            return current
        self.r.hset(key, "failing_since", repr(since))
        return since

    @redis_errors
    def mark_healthy(self, endpoint_id: str) -> None:
        self.r.hset(schema.webhook(endpoint_id), "failing_since", "0")

    @redis_errors
    def disable(self, endpoint_id: str, reason: str, at: float) -> None:
        """Disabled: its streams leave the due set (kept, for a replay to send)."""
        streams = self.streams(endpoint_id)
        # The endpoint (its slot) first, then its entries in the due set (another slot):
        # a crash in between leaves due entries of a disabled endpoint, which deliveries
        # skip and :meth:`due` drops; never an enabled endpoint whose messages are not due.
        self.r.hset(
            schema.webhook(endpoint_id), mapping={"disabled": reason, "disabled_at": repr(at)}
        )
        if streams:
            self.r.zrem(schema.WEBHOOKS_DUE, *(_member(endpoint_id, s) for s in streams))

    @redis_errors
    def enable(self, endpoint_id: str) -> None:
        self.r.hset(
            schema.webhook(endpoint_id),
            mapping={"disabled": "", "disabled_at": "0", "failing_since": "0"},
        )

    @redis_errors
    def delete(self, endpoint: Endpoint) -> None:
        streams = [as_str(s) for s in self.r.smembers(schema.webhook_streams(endpoint.id))]
        # Three slots. The endpoint's own keys go first, in one transaction (its slot); then
        # the index entries that point at them: its streams' places in the due set, and its
        # id in the tenant's set. A crash in between leaves only entries that point at
        # nothing (due() and list() skip and drop them).
        pipe = self.r.pipeline(transaction=True)
        for stream in streams:
            pipe.delete(schema.webhook_stream(endpoint.id, stream))
        pipe.delete(
            schema.webhook(endpoint.id),
            schema.webhook_messages(endpoint.id),
            schema.webhook_recent(endpoint.id),
            schema.webhook_streams(endpoint.id),
            schema.webhook_log(endpoint.id),
            schema.webhook_tries(endpoint.id),
        )
        pipe.execute()
        if streams:
            self.r.zrem(schema.WEBHOOKS_DUE, *(_member(endpoint.id, s) for s in streams))
        self.r.srem(schema.tenant_webhooks(endpoint.tenant_id), endpoint.id)

    # -- the outbox ----------------------------------------------------------------------

    def _mark_due(self, endpoint_id: str, stream: str) -> None:
        """The stream is due now, unless it already waits for a later retry (that keeps the
        order: the head is retried first)."""
        self.r.zadd(schema.WEBHOOKS_DUE, {_member(endpoint_id, stream): time.time()}, nx=True)

    @redis_errors
    def enqueue(self, endpoint_id: str, stream: str, message_id: str, body: str) -> None:
        # Two slots (the due set, the endpoint's outbox): the stream's due entry first, so a
        # crash in between leaves a due stream with nothing new in it (due() drops it if it
        # is empty), never a message in a stream that is not due. And again after: a done()
        # that found the stream empty just before the message landed may have taken the
        # entry out meanwhile.
        self._mark_due(endpoint_id, stream)
        self._enqueue(
            keys=[
                schema.webhook_messages(endpoint_id),
                schema.webhook_recent(endpoint_id),
                schema.webhook_stream(endpoint_id, stream),
                schema.webhook_streams(endpoint_id),
            ],
            args=[message_id, body, stream, MAX_MESSAGES],
        )
        self._mark_due(endpoint_id, stream)

    @redis_errors
    def requeue(self, endpoint_id: str, stream: str, message_id: str) -> None:
        """Send a kept message again, at the end of its stream (a replay)."""
        # the due entry before the stream it points at, and again after (see enqueue)
        self._mark_due(endpoint_id, stream)
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(schema.webhook_stream(endpoint_id, stream), message_id)
        pipe.sadd(schema.webhook_streams(endpoint_id), stream)
        pipe.execute()
        self._mark_due(endpoint_id, stream)

    @redis_errors
    def message(self, endpoint_id: str, message_id: str) -> str | None:
        raw = self.r.hget(schema.webhook_messages(endpoint_id), message_id)
        return as_str(raw) if raw is not None else None

    @redis_errors
    def head(self, endpoint_id: str, stream: str) -> Message | None:
        """The stream's first message; a message trimmed from the bounded hash is dropped
        from the stream and the next one returned."""
        key = schema.webhook_stream(endpoint_id, stream)
        while True:
            raw = self.r.lindex(key, 0)
            if raw is None:
                self.done(endpoint_id, stream, "")
                return None
            message_id = as_str(raw)
            body = self.message(endpoint_id, message_id)
            if body is not None:
                return Message(message_id, stream, body)
            self.done(endpoint_id, stream, message_id)

    @redis_errors
    def done(self, endpoint_id: str, stream: str, message_id: str) -> bool:
        """Take ``message_id`` off the head of its stream; whether more wait."""
        key = schema.webhook_stream(endpoint_id, stream)
        more = self._done(
            keys=[key, schema.webhook_streams(endpoint_id), schema.webhook_tries(endpoint_id)],
            args=[message_id, stream],
        )
        if more:
            return True
        # Emptied: its due entry (another slot) goes after. A message enqueued since lands
        # in a stream whose entry it has just marked, and that this would take away: so
        # look again, and mark it due again if it is no longer empty.
        self.r.zrem(schema.WEBHOOKS_DUE, _member(endpoint_id, stream))
        if self.r.llen(key):
            self._mark_due(endpoint_id, stream)
            return True
        return False

    @redis_errors
    def waiting(self, endpoint_id: str) -> int:
        """Messages waiting in every stream of the endpoint."""
        streams = [as_str(s) for s in self.r.smembers(schema.webhook_streams(endpoint_id))]
        return sum(int(self.r.llen(schema.webhook_stream(endpoint_id, s))) for s in streams)

    @redis_errors
    def streams(self, endpoint_id: str) -> builtins.list[str]:
        return sorted(as_str(s) for s in self.r.smembers(schema.webhook_streams(endpoint_id)))

    @redis_errors
    def add_try(self, endpoint_id: str, message_id: str) -> int:
        return int(self.r.hincrby(schema.webhook_tries(endpoint_id), message_id, 1))

    @redis_errors
    def due_at(self, endpoint_id: str, stream: str) -> float | None:
        score = self.r.zscore(schema.WEBHOOKS_DUE, _member(endpoint_id, stream))
        return float(score) if score is not None else None

    @redis_errors
    def schedule(self, endpoint_id: str, stream: str, at: float) -> None:
        """Try the stream again at ``at`` (only while it still has messages)."""
        self.r.zadd(schema.WEBHOOKS_DUE, {_member(endpoint_id, stream): at}, xx=True)

    @redis_errors
    def schedule_all(self, endpoint_id: str, at: float) -> int:
        streams = self.streams(endpoint_id)
        if streams:
            self.r.zadd(schema.WEBHOOKS_DUE, {_member(endpoint_id, s): at for s in streams})
        return len(streams)

    @redis_errors
    def due(self, now: float, limit: int = 1000) -> builtins.list[tuple[str, str, float]]:
        """Streams whose next try has come: (endpoint id, stream, due time), oldest first.

        An entry that points at nothing to send (its stream empty, its endpoint deleted or
        disabled: a crash between the steps of a split write) is skipped and dropped."""
        got = self.r.zrangebyscore(
            schema.WEBHOOKS_DUE, "-inf", now, start=0, num=limit, withscores=True
        )
        found = []
        for pair in got:
            member, score = pair[0], pair[1]  # (member, score) pairs, withscores
            endpoint_id, _, stream = as_str(member).partition("/")
            found.append((endpoint_id, stream, float(score)))
        idle = self._idle([(e, s) for e, s, _ in found])
        if not any(idle):
            return found
        stale = [entry for entry, no in zip(found, idle, strict=True) if no]
        self.r.zrem(schema.WEBHOOKS_DUE, *(_member(e, s) for e, s, _ in stale))
        # a writer between its steps (enqueue, replay) may have filled the stream meanwhile:
        # those entries go back, as they were
        still = self._idle([(e, s) for e, s, _ in stale])
        back = {_member(e, s): at for (e, s, at), no in zip(stale, still, strict=True) if not no}
        if back:
            self.r.zadd(schema.WEBHOOKS_DUE, back, nx=True)
        return [entry for entry, no in zip(found, idle, strict=True) if not no]

    def _idle(self, streams: builtins.list[tuple[str, str]]) -> builtins.list[bool]:
        """For each (endpoint, stream): whether it has nothing to send (the stream empty,
        the endpoint gone or disabled); one round of reads, whatever their slots."""
        if not streams:
            return []
        endpoints = sorted({e for e, _ in streams})
        pipe = self.r.pipeline(transaction=False)
        for endpoint_id in endpoints:
            pipe.hmget(schema.webhook(endpoint_id), ["tenant", "disabled"])
        for endpoint_id, stream in streams:
            pipe.llen(schema.webhook_stream(endpoint_id, stream))
        got = pipe.execute()
        sendable = {
            e: tenant is not None and not disabled
            for e, (tenant, disabled) in zip(endpoints, got[: len(endpoints)], strict=True)
        }
        return [
            not (sendable[e] and int(waiting))
            for (e, _), waiting in zip(streams, got[len(endpoints) :], strict=True)
        ]

    @redis_errors
    def oldest_due(self) -> float | None:
        """The earliest due time (an entry left pointing at nothing counts until the next
        :meth:`due` drops it)."""
        got = self.r.zrange(schema.WEBHOOKS_DUE, 0, 0, withscores=True)
        return float(got[0][1]) if got else None

    @redis_errors
    def lock(self, endpoint_id: str, stream: str, holder: str, ttl: float) -> bool:
        return bool(
            self.r.set(
                schema.webhook_lock(endpoint_id, stream), holder, nx=True, px=int(ttl * 1000)
            )
        )

    @redis_errors
    def renew(self, endpoint_id: str, stream: str, holder: str, ttl: float) -> bool:
        """Extend the lease iff ``holder`` still holds it."""
        return bool(
            self._renew(
                keys=[schema.webhook_lock(endpoint_id, stream)], args=[holder, int(ttl * 1000)]
            )
        )

    @redis_errors
    def unlock(self, endpoint_id: str, stream: str, holder: str) -> None:
        self._release(keys=[schema.webhook_lock(endpoint_id, stream)], args=[holder])

    # -- the delivery log ----------------------------------------------------------------

    @redis_errors
    def log(self, endpoint_id: str, attempt: Attempt) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.lpush(schema.webhook_log(endpoint_id), json.dumps(attempt.__dict__))
        pipe.ltrim(schema.webhook_log(endpoint_id), 0, MAX_LOG - 1)
        pipe.execute()

    @redis_errors
    def attempts(self, endpoint_id: str, limit: int = 100) -> builtins.list[Attempt]:
        raw = self.r.lrange(schema.webhook_log(endpoint_id), 0, max(0, limit - 1))
        return [Attempt(**json.loads(as_str(r))) for r in raw]

    # -- transcript ready ----------------------------------------------------------------

    @redis_errors
    def await_ready(self, meeting_id: str) -> None:
        """The meeting's bot has left: check it for "transcript ready" until it is."""
        self.r.zadd(schema.WEBHOOKS_AWAITING, {meeting_id: time.time()}, nx=True)

    @redis_errors
    def awaiting(self) -> builtins.list[str]:
        return [as_str(m) for m in self.r.zrange(schema.WEBHOOKS_AWAITING, 0, -1)]

    @redis_errors
    def is_awaiting(self, meeting_id: str) -> bool:
        return self.r.zscore(schema.WEBHOOKS_AWAITING, meeting_id) is not None

    @redis_errors
    def segment_counts(self, meeting_id: str) -> tuple[int, int]:
        """(audio segments still waiting, transcript segments stored) of the meeting."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zcard(schema.meeting_audio(meeting_id))
        pipe.zcard(schema.meeting_transcript(meeting_id))
        counts = pipe.execute()
        return int(counts[0]), int(counts[1])

    @redis_errors
    def announce_ready(self, meeting_id: str, session: str) -> bool:
        """Whether the bot session ``session`` of the meeting is announced now for the first
        time (atomic, so two workers finishing its last segments announce it once)."""
        old = self.r.set(schema.webhook_ready(meeting_id), session, get=True)
        # out of the awaiting index (a slot of its own) after the mark: a crash in between
        # leaves the meeting awaiting, and the sweep's next check finds it announced
        self.r.zrem(schema.WEBHOOKS_AWAITING, meeting_id)
        return old is None or as_str(old) != session

    @redis_errors
    def forget_meeting(self, meeting_id: str) -> None:
        # two slots: the meeting's mark first, then its entry in the awaiting index
        self.r.delete(schema.webhook_ready(meeting_id))
        self.r.zrem(schema.WEBHOOKS_AWAITING, meeting_id)
