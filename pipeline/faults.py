"""Deliberate faults, for proving that the privacy and fault tests can fail. Never for
production.

Each fault switches off one mechanism at its one-line hook, so that a test suite can show
the test guarding that mechanism fails without it: the privacy mechanisms
(:data:`PRIVACY`, ``tests/privacy/test_mutations.py``) and the recovery mechanisms
(:data:`RECOVERY`, ``tests/faults/test_mutations.py``) and the multi-tenant defences
(:data:`SECURITY`, ``tests/security/test_mutations.py``).
Faults are named in ``SEALSCRIBE_FAULTS`` (comma separated) and are read **only** when
``SEALSCRIBE_ALLOW_FAULTS`` is also set to :data:`CONSENT`; a process that finds
``SEALSCRIBE_FAULTS`` without that consent, or an unknown fault name, refuses to start
(:class:`keys.errors.InvalidInput` from the settings). Unset, every hook is a no-op.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Mapping

from pipeline.errors import InvalidInput
from pipeline.models import Meeting, Tenant

__all__ = [
    "ALLOW_VAR",
    "CONSENT",
    "FAULTS",
    "FAULTS_VAR",
    "PRIVACY",
    "RECOVERY",
    "SECURITY",
    "active",
    "on",
    "parse",
    "permitted",
    "unrevoked",
]

log = logging.getLogger(__name__)

FAULTS_VAR = "SEALSCRIBE_FAULTS"
ALLOW_VAR = "SEALSCRIBE_ALLOW_FAULTS"
CONSENT = "i-understand-this-breaks-privacy"

#: the privacy faults, and the mechanism each breaks (PRIVACY.md names the test that catches it)
PRIVACY: dict[str, str] = {
    "log-plaintext": "the worker logs the transcript text it seals",
    "capture-ignores-policy": "capture seals and stores audio whatever the switch and the "
    "opt-outs say",
    "worker-ignores-policy": "the worker transcribes whatever the switch and the opt-outs say",
    "worker-ignores-revocation": "the worker does not check whether the tenant revoked its key",
    "skip-seal-context": "segments are sealed and opened under one fixed context, so a "
    "segment moved to another participant or position still opens",
    "rotate-skips-rewrap": "rotation does not rewrap the stored data keys",
    "keep-audio": "transcribing a segment leaves its sealed audio in Redis",
    "keep-interims": "a final transcript leaves its utterance's interim captions in Redis",
    "no-rotate-on-delete": "deleting a meeting does not rotate and retire the tenant key",
    "audit-skip": "unwraps of data keys are not written to the audit log",
    "no-tenant-check": "a meeting is found whichever tenant asks for it",
    "audit-unkeyed": "audit entries are not MACed with the tenant's key and verify checks no "
    "MAC, so a chain rewritten with recomputed hashes verifies",
    "audit-ignores-head": "audit verify ignores the head the customer saved, so a chain cut "
    "back to an earlier entry verifies",
    "no-manifest": "meeting verify and the transcript export check no manifest, so a deleted "
    "segment or transcript goes unnamed",
    "erase-keeps-keys": "erasing a participant deletes their content but keeps their data "
    "keys and the tenant key versions that wrapped them",
    "receipt-unkeyed": "erasure receipts are checked without their MAC, so an edited receipt "
    "verifies",
}

#: the recovery faults, and the mechanism each breaks (tests/faults names the test)
RECOVERY: dict[str, str] = {
    "capture-drops-on-outage": "capture drops sealed segments it cannot store, instead of "
    "holding them (bounded) until Redis returns",
    "worker-owns-work": "a worker acknowledges a task when it takes it and its batch leases "
    "never lapse, so work held by a killed worker is never redone",
    "bot-gives-up": "the bot leaves for good when its connection to the meeting is lost",
    "captions-ignore-cursor": "the caption socket ignores the client's cursor and starts "
    "from what comes next",
    "logs-unguarded": "log files are written by the standard handler, which dumps every "
    "record it cannot write to stderr",
    "store-pins-primary": "a client of a Sentinel-watched store keeps the primary the "
    "sentinels named when it connected, and never asks them again after a failover",
}

#: the multi-tenant defences, and what each fault switches off (tests/security names the test)
SECURITY: dict[str, str] = {
    "whip-reads-extra-tracks": "WHIP answers every media section of an offer recvonly, so "
    "aiortc receives and decodes tracks that nothing consumes (their frames pile up)",
    "whip-sessions-unbounded": "WHIP sessions are not counted against the per-meeting and "
    "per-tenant caps",
    # per-tenant quotas and the small hardening defaults (tests/security/test_quotas.py,
    # tests/security/test_small.py)
    "quotas-off": "no per-tenant quota is enforced: meetings, bots, publishers followed "
    "and requests per second are unbounded",
    "ids-unchecked": "ids are used as given: a meeting id like M:keys names another record",
    "healthz-detail": "/healthz shows the key provider's error text to anyone",
    "metrics-open": "/metrics and the metrics ports answer without SEALSCRIBE_METRICS_TOKEN",
    "docs-on": "/docs and /redoc (Swagger UI and ReDoc from a public CDN) are served "
    "without SEALSCRIBE_API_DOCS",
    "join-secret-in-clear": "the join URL (pin, API secret) is kept in Redis in the clear",
    "webhook-secret-in-clear": "a webhook endpoint's signing secret is kept in Redis in the clear",
    "shred-in-request": "a meeting delete rotates and retires the tenant key inside the "
    "request, not in a background job the beat retries",
    # tokens, caption tickets and sockets, failed authentications
    # (tests/security/test_tokens.py, tests/security/test_caption_sockets.py)
    "token-scopes-ignored": "every valid token may do everything, whatever its scopes",
    "long-token-in-url": "the caption socket takes a long-lived token from the URL "
    "(access_token=), where proxies log it",
    "caption-ticket-reusable": "a caption ticket can be used again until it expires",
    "caption-sockets-unbounded": "caption sockets are not counted against the per-meeting "
    "and per-tenant caps",
    "caption-socket-outlives-token": "an open caption socket is not closed when its token "
    "is revoked or rotated or the tenant erased",
    "auth-failures-unlimited": "failed authentications are not counted: a client may try "
    "tokens as fast as it likes",
    # the egress policy (tests/security/test_egress.py)
    "egress-unchecked": "the bot connects to whatever address a join URL names or resolves "
    "to, whatever SEALSCRIBE_BOT_ALLOW says",
    "egress-follows-redirects": "the bot follows HTTP redirects from the meeting server, "
    "replaying its requests (API secret included) wherever they point",
    "egress-reasons-differ": "the tenant sees why the meeting server could not be reached "
    "(refused, closed port, not Janus), which maps what answers where",
    "ice-candidates-unchecked": "remote ICE candidates (in WHIP offers and in Janus's offers) "
    "are used as they come, whatever SEALSCRIBE_BOT_ALLOW says",
}

FAULTS: dict[str, str] = PRIVACY | RECOVERY | SECURITY


def parse(env: Mapping[str, str]) -> frozenset[str]:
    """The faults ``env`` asks for; refuses (``InvalidInput``) without the consent value."""
    names = frozenset(n.strip() for n in env.get(FAULTS_VAR, "").split(",") if n.strip())
    if not names:
        return names
    if env.get(ALLOW_VAR) != CONSENT:
        raise InvalidInput(
            f"{FAULTS_VAR} is set, and it disables privacy mechanisms: refusing "
            f"to start. Fault injection is for the privacy test suite only; "
            f"unset {FAULTS_VAR}, or (tests only) set {ALLOW_VAR}={CONSENT}"
        )
    unknown = sorted(names - FAULTS.keys())
    if unknown:
        raise InvalidInput(
            f"{FAULTS_VAR} names unknown faults: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(FAULTS))})"
        )
    return names


@functools.cache
def active() -> frozenset[str]:
    """The faults of this process, read from the environment once."""
    names = parse(os.environ)
    if names:
        log.warning(
            "FAULTS INJECTED, privacy guarantees are broken on purpose: %s",
            ", ".join(sorted(names)),
        )
    return names


def on(name: str) -> bool:
    """Whether fault ``name`` is injected in this process (a hook's one question)."""
    assert name in FAULTS, name
    return name in active()


def permitted(meeting: Meeting, fault: str) -> Meeting:
    """``meeting``, or (with ``fault`` injected) the same meeting switched on with nobody
    opted out: how a policy check that ignores the policy sees it."""
    if not on(fault):
        return meeting
    return dataclasses.replace(
        meeting, transcription=True, opted_out=frozenset(), consent_mode="notice"
    )


def unrevoked(tenant: Tenant) -> Tenant:
    """``tenant``, or (with ``worker-ignores-revocation``) the tenant as if never revoked."""
    return dataclasses.replace(tenant, revoked=False) if on("worker-ignores-revocation") else tenant
