"""Webhooks: a tenant's endpoints, their secrets, and the events sealscribe emits to them.

An endpoint is a URL that passes the egress policy (checked here at creation, and again on
the address each delivery connects to), a set of event types (``*``: all) and a signing
secret ``whsec_`` + base64 of 32 random bytes, shown once and stored sealed. Events carry
ids, state names and counts, never transcript text, audio or anything a participant said.

:func:`emit` puts an event in the outbox of every endpoint of the tenant that wants it and
queues its delivery (:mod:`pipeline.services.webhook_delivery` sends it). Emitting never
fails the operation that caused it: an event that cannot be stored is logged and lost, one
whose Celery message cannot be sent is delivered by the beat's sweep.

Why the secret is sealed with an operator key and not the tenant's: the secret protects no
content (it lets the customer tell our requests from forgeries), and "key revoked" and "key
rotated" must still be signed after the tenant's key is revoked or its old versions retired.
The operator key is ``SEALSCRIBE_WEBHOOK_KEY``, else a file ``$SEALSCRIBE_HOME/webhook.key``
(mode 0600) made on first use; Redis holds only the sealed secret, bound to its tenant,
endpoint and generation.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import logging
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import keys
from keys.local import parse_key_material
from keys.types import DataKey
from pipeline import egress, faults
from pipeline.errors import OURS, InvalidInput, NotFound, QuotaExceeded
from pipeline.models import Meeting
from pipeline.queue import enqueue_webhook
from pipeline.runtime import Runtime
from pipeline.store.webhooks import TENANT_STREAM, Attempt, Endpoint

__all__ = [
    "EVENTS",
    "REFUSED",
    "add_endpoint",
    "audit_heads",
    "bot_state_changed",
    "check_url",
    "consent_changed",
    "delivery_log",
    "emit",
    "endpoint_secrets",
    "get_endpoint",
    "key_changed",
    "list_endpoints",
    "meeting_deleted",
    "remove_endpoint",
    "replay",
    "retention_purged",
    "rotate_secret",
    "segment_settled",
    "segments_settled",
    "transcript_ready",
    "transcription_switched",
]

log = logging.getLogger(__name__)

#: every event type an endpoint can subscribe to
EventName = Literal[
    "bot.state_changed",
    "meeting.transcription_switched",
    "meeting.consent_changed",
    "meeting.transcript_ready",
    "meeting.deleted",
    "key.rotated",
    "key.retired",
    "key.revoked",
    "retention.purged",
    "audit.head",
]
EVENTS: tuple[str, ...] = get_args(EventName)
#: the one reason a tenant hears for a URL the service will not send to
REFUSED = (
    "the webhook URL cannot be used: its host is not reachable under this service's egress policy"
)
#: how long a rotated-out secret still signs (a second signature), so receivers can switch
PREVIOUS_GRACE_S = 24 * 3600
MAX_URL = 2000
#: what the sealed secret is bound to: a meeting id no meeting can have (ids are printable)
_SEAL_MEETING = "\x00webhook-secret"


# -- the operator key that seals secrets ----------------------------------------------------

_key_lock = threading.Lock()
_key_cache: dict[str, DataKey] = {}


def _sealing_key(rt: Runtime) -> DataKey:
    configured = rt.settings.webhooks.key
    where = "env" if configured else str(rt.settings.home / "webhook.key")
    with _key_lock:
        if where not in _key_cache:
            if configured:
                _key_cache[where] = DataKey(parse_key_material(configured.encode()))
            else:
                _key_cache[where] = DataKey(_key_file(Path(where)))
        return _key_cache[where]


def _key_file(path: Path) -> bytes:
    """The key in ``path``, made (32 random bytes, mode 0600) if absent. A file others can
    read is refused, as the local keyring refuses one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, base64.b64encode(secrets.token_bytes(32)))
            os.fsync(fd)
        finally:
            os.close(fd)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(f"{path} is readable by other users: chmod 600 it")
    for _ in range(50):  # another process may be writing it right now
        data = path.read_bytes()
        if data:
            return parse_key_material(data)
        time.sleep(0.01)
    raise InvalidInput(f"{path} is empty")


def _context(endpoint_id: str, tenant_id: str, generation: int) -> keys.SegmentContext:
    return keys.SegmentContext(
        tenant_id, _SEAL_MEETING, endpoint_id, generation, keys.SegmentKind.TRANSCRIPT
    )


def _seal(rt: Runtime, endpoint_id: str, tenant_id: str, generation: int, secret: str) -> str:
    if faults.on("webhook-secret-in-clear"):
        return secret
    sealed = keys.seal(
        _sealing_key(rt), _context(endpoint_id, tenant_id, generation), secret.encode()
    )
    return base64.b64encode(sealed).decode()


def _open(rt: Runtime, endpoint_id: str, tenant_id: str, generation: int, sealed: str) -> str:
    if faults.on("webhook-secret-in-clear"):
        return sealed
    raw = keys.open(
        _sealing_key(rt), _context(endpoint_id, tenant_id, generation), base64.b64decode(sealed)
    )
    return raw.decode()


def _new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def endpoint_secrets(rt: Runtime, endpoint: Endpoint, now: float | None = None) -> list[str]:
    """The secrets a delivery is signed with: the current one, and the one it replaced
    while that is still in its grace period."""
    now = time.time() if now is None else now
    out = [
        _open(
            rt, endpoint.id, endpoint.tenant_id, endpoint.secret_generation, endpoint.sealed_secret
        )
    ]
    if endpoint.sealed_previous and now < endpoint.previous_until:
        out.append(
            _open(
                rt,
                endpoint.id,
                endpoint.tenant_id,
                endpoint.secret_generation - 1,
                endpoint.sealed_previous,
            )
        )
    return out


# -- endpoints ------------------------------------------------------------------------------


def check_url(url: str, policy: egress.EgressPolicy | None = None) -> str:
    """``url`` if it is an http(s) URL whose host resolves only to addresses the egress
    policy allows (default: this process's).

    Raises:
        InvalidInput: what is malformed; or :data:`REFUSED` for a host the policy refuses,
            one that does not resolve, or one that resolves to any refused address (the
            detail goes to the operator's log only).
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise InvalidInput(f"the webhook URL must be 1 to {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput("the webhook URL is malformed") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("the webhook URL must start with https:// or http://")
    if not parts.hostname:
        raise InvalidInput("the webhook URL has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("the webhook URL must not carry a user name or password")
    if parts.fragment:
        raise InvalidInput("the webhook URL must not have a fragment")
    rules = egress.current() if policy is None else policy
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(
            host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError):
        log.warning("webhook URL refused: its host does not resolve")
        raise InvalidInput(REFUSED) from None
    addresses = {str(info[4][0]) for info in infos}
    refused = [a for a in addresses if not rules.allows(host, a)]
    if (refused or not addresses) and not faults.on("egress-unchecked"):
        log.warning(
            "webhook URL refused: %s resolves to %s, which %s does not allow",
            host,
            ", ".join(sorted(refused)),
            egress.ALLOW_VAR,
        )
        raise InvalidInput(REFUSED)
    return url


def _check_events(events: Sequence[str] | None) -> tuple[str, ...]:
    if not events:
        return ("*",)
    if set(events) - set(EVENTS) - {"*"}:  # not echoed: the caller knows what it sent
        raise InvalidInput(f"unknown webhook event type; known: {', '.join(EVENTS)} or *")
    return tuple(dict.fromkeys(events))


def add_endpoint(
    rt: Runtime, tenant_id: str, url: str, events: Sequence[str] | None = None
) -> tuple[Endpoint, str]:
    """A new endpoint of the tenant; returns it and its secret (shown this once only)."""
    rt.store.tenants.get(tenant_id)
    chosen = _check_events(events)
    check_url(url)
    limit = rt.settings.webhooks.quota
    if limit and rt.store.webhooks.count(tenant_id) >= limit:
        raise QuotaExceeded(
            f"the tenant already has {limit} webhook endpoints (SEALSCRIBE_QUOTA_WEBHOOKS)"
        )
    endpoint_id = rt.store.webhooks.new_id()
    secret = _new_secret()
    endpoint = Endpoint(
        endpoint_id,
        tenant_id,
        url,
        chosen,
        time.time(),
        sealed_secret=_seal(rt, endpoint_id, tenant_id, 1, secret),
        secret_generation=1,
    )
    rt.store.webhooks.create(endpoint)
    rt.keys.audit.record(tenant_id, "webhook", actor=rt.actor, outcome=f"add:{endpoint_id}")
    return endpoint, secret


def get_endpoint(rt: Runtime, endpoint_id: str, tenant_id: str | None = None) -> Endpoint:
    """The endpoint; :class:`NotFound` for an unknown one or one of another tenant."""
    endpoint = rt.store.webhooks.get(endpoint_id) if isinstance(endpoint_id, str) else None
    if endpoint is None or (tenant_id is not None and endpoint.tenant_id != tenant_id):
        raise NotFound(f"no webhook endpoint {str(endpoint_id)[:40]!r}")
    return endpoint


def list_endpoints(rt: Runtime, tenant_id: str) -> list[Endpoint]:
    rt.store.tenants.get(tenant_id)
    return rt.store.webhooks.list(tenant_id)


def remove_endpoint(rt: Runtime, endpoint_id: str, tenant_id: str | None = None) -> Endpoint:
    endpoint = get_endpoint(rt, endpoint_id, tenant_id)
    rt.store.webhooks.delete(endpoint)
    rt.keys.audit.record(
        endpoint.tenant_id, "webhook", actor=rt.actor, outcome=f"remove:{endpoint.id}"
    )
    return endpoint


def rotate_secret(
    rt: Runtime, endpoint_id: str, tenant_id: str | None = None
) -> tuple[Endpoint, str]:
    """A new secret for the endpoint (returned, shown once); the old one also signs for
    :data:`PREVIOUS_GRACE_S` more seconds, as a second signature."""
    endpoint = get_endpoint(rt, endpoint_id, tenant_id)
    secret = _new_secret()
    generation = endpoint.secret_generation + 1
    rt.store.webhooks.set_secret(
        endpoint.id,
        _seal(rt, endpoint.id, endpoint.tenant_id, generation, secret),
        generation,
        endpoint.sealed_secret,
        time.time() + PREVIOUS_GRACE_S,
    )
    rt.keys.audit.record(
        endpoint.tenant_id, "webhook", actor=rt.actor, outcome=f"rotate-secret:{endpoint.id}"
    )
    return get_endpoint(rt, endpoint.id), secret


def delivery_log(
    rt: Runtime, endpoint_id: str, tenant_id: str | None = None, limit: int = 100
) -> list[Attempt]:
    """The endpoint's latest delivery attempts, newest first."""
    endpoint = get_endpoint(rt, endpoint_id, tenant_id)
    return rt.store.webhooks.attempts(endpoint.id, max(1, min(limit, 500)))


def replay(
    rt: Runtime, endpoint_id: str, tenant_id: str | None = None, message_id: str | None = None
) -> int:
    """Deliver again: re-enables a disabled endpoint, then sends ``message_id`` (a message
    still kept, delivered or not) once more at the end of its stream, or (no id) retries
    every waiting message now. Returns how many streams were scheduled."""
    endpoint = get_endpoint(rt, endpoint_id, tenant_id)
    rt.store.webhooks.enable(endpoint.id)
    if message_id is not None:
        body = rt.store.webhooks.message(endpoint.id, message_id)
        if body is None:
            raise NotFound(f"no kept message {message_id[:40]!r} for endpoint {endpoint.id}")
        stream = json.loads(body).get("data", {}).get("meeting_id") or TENANT_STREAM
        rt.store.webhooks.requeue(endpoint.id, stream, message_id)
        rt.store.webhooks.schedule(endpoint.id, stream, time.time())
        streams = [stream]
    else:
        rt.store.webhooks.schedule_all(endpoint.id, time.time())
        streams = rt.store.webhooks.streams(endpoint.id)
    for stream in streams:
        _send(endpoint.id, stream)
    rt.keys.audit.record(
        endpoint.tenant_id, "webhook", actor=rt.actor, outcome=f"replay:{endpoint.id}"
    )
    return len(streams)


# -- emitting -------------------------------------------------------------------------------

_PLAIN = (str, int, float, bool, type(None))


def _send(endpoint_id: str, stream: str) -> None:
    try:
        enqueue_webhook(endpoint_id, stream)
    except Exception as exc:  # the beat's sweep delivers it
        log.warning(
            "could not queue a webhook delivery for %s (%s); the beat's sweep sends it",
            endpoint_id,
            type(exc).__name__,
        )


def emit(
    rt: Runtime,
    tenant_id: str,
    event_type: str,
    data: dict[str, Any],
    meeting_id: str | None = None,
) -> int:
    """Queue an event for every enabled endpoint of the tenant that wants it; returns how
    many. ``data`` holds ids, state names and counts only (flat, plain values). Never
    raises for a store or broker failure: the event is then logged as lost."""
    if event_type not in EVENTS:
        raise ValueError(f"unknown webhook event {event_type!r}")
    for name, value in data.items():  # a guard on the shape: nothing nested, nothing long
        if not isinstance(value, _PLAIN) or (isinstance(value, str) and len(value) > 200):
            raise TypeError(f"webhook event field {name!r} must be a short plain value")
    try:
        endpoints = [
            e for e in rt.store.webhooks.list(tenant_id) if not e.disabled and e.wants(event_type)
        ]
        if not endpoints:
            return 0
        stream = meeting_id or TENANT_STREAM
        body = {
            "type": event_type,
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "data": {
                "tenant_id": tenant_id,
                **({"meeting_id": meeting_id} if meeting_id else {}),
                **data,
            },
        }
        text = json.dumps(body, separators=(",", ":"))
        for endpoint in endpoints:
            rt.store.webhooks.enqueue(endpoint.id, stream, rt.store.webhooks.new_message_id(), text)
    except OURS as exc:
        log.warning(
            "webhook event %s of tenant %s was not stored (%s)",
            event_type,
            tenant_id,
            type(exc).__name__,
        )
        return 0
    for endpoint in endpoints:
        _send(endpoint.id, stream)
    return len(endpoints)


def _tenant_of(rt: Runtime, meeting_id: str) -> str | None:
    try:
        return rt.store.meetings.get(meeting_id).tenant_id
    except OURS:
        return None


def bot_state_changed(rt: Runtime, meeting_id: str, state: str, reason: str = "") -> None:
    """The meeting's bot is now ``state`` (a :class:`~pipeline.models.BotState` value);
    ``reason`` says why it failed or is reconnecting. A bot that is done (left or failed)
    starts the watch for "transcript ready"."""
    tenant_id = _tenant_of(rt, meeting_id)
    if tenant_id is None:
        return
    emit(rt, tenant_id, "bot.state_changed", {"state": state, "reason": reason[:200]}, meeting_id)
    if state in ("left", "failed"):
        with contextlib.suppress(*OURS):
            rt.store.webhooks.await_ready(meeting_id)
            segment_settled(rt, meeting_id)


def transcription_switched(rt: Runtime, meeting: Meeting) -> None:
    emit(
        rt,
        meeting.tenant_id,
        "meeting.transcription_switched",
        {"transcription": "on" if meeting.transcription else "off"},
        meeting.id,
    )


def consent_changed(rt: Runtime, meeting: Meeting, participant_id: str, opted_out: bool) -> None:
    emit(
        rt,
        meeting.tenant_id,
        "meeting.consent_changed",
        {"participant_id": participant_id, "consent": "opted-out" if opted_out else "opted-in"},
        meeting.id,
    )


def meeting_deleted(rt: Runtime, meeting: Meeting, reason: str = "deleted") -> None:
    with contextlib.suppress(*OURS):
        rt.store.webhooks.forget_meeting(meeting.id)
    emit(rt, meeting.tenant_id, "meeting.deleted", {"reason": reason}, meeting.id)


def key_changed(rt: Runtime, tenant_id: str, change: str, **counts: int) -> None:
    """``change`` is ``rotated``, ``retired`` or ``revoked``; ``counts`` such as the new
    primary version or how many data keys were rewrapped."""
    emit(rt, tenant_id, f"key.{change}", dict(counts))


def retention_purged(rt: Runtime, tenant_id: str, meetings: int) -> None:
    emit(rt, tenant_id, "retention.purged", {"meetings_shredded": meetings})


def transcript_ready(rt: Runtime, meeting_id: str) -> bool:
    """Announce "transcript ready" if the meeting's bot is done and none of its audio
    waits (every segment transcribed or purged); once per bot session. Whether it did."""
    try:
        bot = rt.store.bots.get(meeting_id)
        if bot is None or not bot.state.final:
            return False
        pending, transcribed = rt.store.webhooks.segment_counts(meeting_id)
        if pending:
            return False
        tenant_id = _tenant_of(rt, meeting_id)
        if tenant_id is None:
            rt.store.webhooks.forget_meeting(meeting_id)
            return False
        if not rt.store.webhooks.announce_ready(meeting_id, repr(bot.since)):
            return False
    except OURS as exc:
        log.warning(
            "transcript-ready check of meeting %s failed (%s)", meeting_id, type(exc).__name__
        )
        return False
    emit(
        rt,
        tenant_id,
        "meeting.transcript_ready",
        {"bot_state": bot.state.value, "segments": transcribed},
        meeting_id,
    )
    return True


def segment_settled(rt: Runtime, meeting_id: str) -> None:
    """A segment of the meeting was transcribed or purged: the worker calls this after each
    one, so "transcript ready" goes out as soon as the last one settles (the beat's sweep
    also checks every meeting whose bot left, so a missed call only delays it). Never
    raises for a store failure."""
    try:
        awaiting = rt.store.webhooks.is_awaiting(meeting_id)
    except OURS:
        return
    if awaiting:
        transcript_ready(rt, meeting_id)


def segments_settled(rt: Runtime, meeting_ids: Iterable[str]) -> None:
    """:func:`segment_settled` for each meeting of a worker's batch (each once)."""
    for meeting_id in sorted(set(meeting_ids)):
        segment_settled(rt, meeting_id)


def audit_heads(rt: Runtime) -> int:
    """Send every tenant that wants it its audit chain's head (count, hash, MAC and time of
    the newest entry: the event's ``data`` is itself a head ``audit verify --since`` takes),
    so the customer keeps heads outside sealscribe; returns how many tenants."""
    sent = 0
    for tenant in rt.store.tenants.list():
        if not any(
            not e.disabled and e.wants("audit.head") for e in rt.store.webhooks.list(tenant.id)
        ):
            continue
        head = rt.keys.audit.head(tenant.id)
        data: dict[str, Any] = {"count": 0, "hash": "", "mac": "", "at": 0.0}
        if head is not None:
            data = {"count": head.count, "hash": head.hash, "mac": head.mac, "at": head.at}
        sent += bool(emit(rt, tenant.id, "audit.head", data))
    return sent
