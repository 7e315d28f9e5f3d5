"""Delivering webhook events: signing, one HTTP POST under the egress policy, retries.

A worker task calls :func:`deliver_stream` for one stream (a meeting's events, or the
tenant's) of one endpoint. Under a lease, so one worker at a time sends a stream's head, it
sends the head, and on a 2xx answer takes it off and sends the next: each meeting's events
arrive in order, at least once (a worker that dies after the receiver answered but before
the head was taken off sends it again, with the same ``webhook-id``). A failure leaves the
head where it is and schedules the stream's next try with exponential backoff
(``SEALSCRIBE_WEBHOOK_RETRY_S`` doubling up to ``_MAX_RETRY_S``); once deliveries to an
endpoint have failed for ``SEALSCRIBE_WEBHOOK_GIVE_UP_S`` (a day) without a success, the
endpoint is disabled: the console shows it, and a replay re-enables it.

Each request (Standard Webhooks): ``POST`` the JSON body with ``webhook-id`` (the message
id, the same on every retry), ``webhook-timestamp`` (this attempt's Unix time) and
``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 over ``id.timestamp.body`` with the
secret's bytes; two signatures while a rotated-out secret is in its grace period).

Egress: the connection goes through :func:`pipeline.egress.connector`, which checks the
address actually connected to and refuses before any byte is sent; no redirect is followed
(a 3xx is a failure); no proxy from the environment; a total timeout
(``SEALSCRIBE_WEBHOOK_TIMEOUT_S``); at most :data:`MAX_RESPONSE` bytes of the answer are
read, and never stored.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from keys.errors import InvalidSeal
from pipeline import egress
from pipeline.errors import OURS
from pipeline.queue import enqueue_webhook
from pipeline.runtime import Runtime
from pipeline.services.webhooks import endpoint_secrets, transcript_ready
from pipeline.store.webhooks import Attempt, Endpoint, Message

__all__ = [
    "MAX_RESPONSE",
    "Outcome",
    "backoff",
    "deliver_stream",
    "queue_age",
    "sign",
    "sweep",
]

log = logging.getLogger(__name__)

#: bytes of a receiver's answer read (then discarded)
MAX_RESPONSE = 4096
#: messages one task sends from a stream before it hands the rest to a new task
MAX_PER_TASK = 50

#: called after each attempt with (event type, outcome, seconds since the event was made)
OnAttempt = Callable[[str, str, float], None]


@dataclass(frozen=True)
class Outcome:
    """What one POST came to: ``delivered`` (2xx), ``failed`` or ``refused`` (the egress
    policy refused the address: nothing was sent)."""

    outcome: str
    status: int = 0
    error: str = ""


def sign(secrets: list[str], message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64 HMAC-SHA256>`` per secret."""
    signed = f"{message_id}.{timestamp}.{body}".encode()
    out = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        mac = hmac.new(key, signed, hashlib.sha256).digest()
        out.append("v1," + base64.b64encode(mac).decode())
    return " ".join(out)


def backoff(tries: int, first: float, cap: float) -> float:
    """Seconds before try ``tries + 1``: ``first`` doubled per try, at most ``cap``."""
    return float(min(cap, first * 2 ** max(0, min(tries - 1, 30))))


async def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
    import aiohttp  # the HTTP stack only where deliveries are made

    host = urlsplit(url).hostname or ""
    try:
        async with (
            aiohttp.ClientSession(
                connector=egress.connector(host),
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as session,
            session.post(url, data=body, headers=headers, allow_redirects=False) as response,
        ):
            await response.content.read(MAX_RESPONSE)  # bounded, then dropped
            status = response.status
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, egress.EgressRefused):
            return Outcome("refused", 0, "refused by the egress policy")
        return Outcome("failed", 0, f"could not connect ({type(exc.os_error).__name__})")
    except TimeoutError:
        return Outcome("failed", 0, "timed out")
    except (aiohttp.ClientError, OSError) as exc:
        # the type only: an aiohttp message can quote the URL
        return Outcome("failed", 0, f"no answer ({type(exc).__name__})")
    if 200 <= status < 300:
        return Outcome("delivered", status)
    return Outcome("failed", status, f"answered HTTP {status}")


def _send(rt: Runtime, endpoint: Endpoint, message: Message) -> Outcome:
    try:
        secrets = endpoint_secrets(rt, endpoint)
    except InvalidSeal:
        log.error(
            "the signing secret of webhook endpoint %s cannot be opened here: give every API "
            "and worker host the same SEALSCRIBE_WEBHOOK_KEY",
            endpoint.id,
        )
        return Outcome("failed", 0, "the signing secret cannot be opened (operator key)")
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "sealscribe-webhooks/1",
        "webhook-id": message.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, message.id, timestamp, message.body),
    }
    return asyncio.run(
        _post(endpoint.url, message.body.encode(), headers, rt.settings.webhooks.timeout_s)
    )


def _about(body: str) -> tuple[str, str, float]:
    """(event type, meeting id or "", Unix time it was made) of a message body."""
    try:
        doc = json.loads(body)
        made = doc.get("timestamp", "")
        at = datetime.datetime.fromisoformat(made).timestamp() if made else time.time()
        return str(doc.get("type", "")), str(doc.get("data", {}).get("meeting_id", "")), at
    except (ValueError, TypeError, AttributeError):
        return "", "", time.time()


def deliver_stream(
    rt: Runtime, endpoint_id: str, stream: str, holder: str, on_attempt: OnAttempt | None = None
) -> float | None:
    """Send the stream's waiting messages, head first, until one fails or none is left.

    Returns the seconds until the stream's next try when it should be tried again (the
    caller may queue a task for then; the beat's sweep does anyway), else None."""
    store = rt.store.webhooks
    hooks = rt.settings.webhooks
    lease = hooks.timeout_s * 3 + 30  # one request at most, with room to spare
    if not store.lock(endpoint_id, stream, holder, lease):
        return None  # another worker sends this stream now
    try:
        for _ in range(MAX_PER_TASK):
            if not store.renew(endpoint_id, stream, holder, lease):
                return None  # the lease lapsed and another worker took the stream
            endpoint = store.get(endpoint_id)
            if endpoint is None or endpoint.disabled:
                return None
            due = store.due_at(endpoint_id, stream)
            now = time.time()
            if due is None:
                return None
            if due > now:
                return due - now
            message = store.head(endpoint_id, stream)
            if message is None:
                return None
            tries = store.add_try(endpoint_id, message.id)
            result = _send(rt, endpoint, message)
            event, meeting_id, made = _about(message.body)
            now = time.time()
            if on_attempt is not None:
                on_attempt(event, result.outcome, now - made)
            if result.outcome == "delivered":
                store.mark_healthy(endpoint_id)
                store.log(
                    endpoint_id,
                    Attempt(message.id, event, meeting_id, now, tries, "delivered", result.status),
                )
                store.done(endpoint_id, stream, message.id)
                continue
            since = store.mark_failing(endpoint_id, now)
            if now - since >= hooks.give_up_s:
                _disable(rt, endpoint, message, event, meeting_id, tries, result, now, since)
                return None
            delay = backoff(tries, hooks.retry_s, hooks.max_retry_s)
            store.schedule(endpoint_id, stream, now + delay)
            store.log(
                endpoint_id,
                Attempt(
                    message.id,
                    event,
                    meeting_id,
                    now,
                    tries,
                    result.outcome,
                    result.status,
                    result.error,
                    now + delay,
                ),
            )
            log.info(
                "webhook delivery to endpoint %s failed (%s); try %d again in %.0f s",
                endpoint_id,
                result.error,
                tries,
                delay,
            )
            return delay
        return 0.0  # more to send: a new task goes on
    finally:
        store.unlock(endpoint_id, stream, holder)


def _disable(
    rt: Runtime,
    endpoint: Endpoint,
    message: Message,
    event: str,
    meeting_id: str,
    tries: int,
    result: Outcome,
    now: float,
    since: float,
) -> None:
    failing = now - since
    took = f"{failing:.0f} s" if failing < 3600 else f"{failing / 3600:.1f} h"
    reason = f"every delivery failed for {took} (last: {result.error}); replay to re-enable"
    rt.store.webhooks.disable(endpoint.id, reason, now)
    rt.store.webhooks.log(
        endpoint.id,
        Attempt(
            message.id,
            event,
            meeting_id,
            now,
            tries,
            "disabled",
            result.status,
            result.error,
        ),
    )
    rt.keys.audit.record(
        endpoint.tenant_id, "webhook", actor=rt.actor, outcome=f"disabled:{endpoint.id}"
    )
    log.warning("webhook endpoint %s disabled: %s", endpoint.id, reason)


def sweep(rt: Runtime, now: float | None = None) -> int:
    """The beat's job: queue every stream whose next try has come, and announce
    "transcript ready" for meetings whose bot left and whose last segment has settled.
    Returns how many deliveries were queued."""
    now = time.time() if now is None else now
    queued = 0
    for endpoint_id, stream, _ in rt.store.webhooks.due(now):
        try:
            enqueue_webhook(endpoint_id, stream)
            queued += 1
        except Exception as exc:
            log.warning("webhook sweep could not queue a delivery (%s)", type(exc).__name__)
            break
    for meeting_id in rt.store.webhooks.awaiting():
        try:
            transcript_ready(rt, meeting_id)
        except OURS as exc:
            log.warning("transcript-ready check failed (%s)", type(exc).__name__)
    return queued


def queue_age(rt: Runtime, now: float | None = None) -> float:
    """Seconds the most overdue webhook stream has waited past its due time (0: none)."""
    now = time.time() if now is None else now
    oldest = rt.store.webhooks.oldest_due()
    return max(0.0, now - oldest) if oldest is not None else 0.0
