"""Deliberate faults, for proving that the privacy and fault tests can fail. Never for
production.

Each fault switches off one mechanism at its one-line hook, so that a test suite can show
the test guarding that mechanism fails without it: the privacy mechanisms
(:data:`PRIVACY`, ``tests/privacy/test_mutations.py``) and the recovery mechanisms
(:data:`RECOVERY`, ``tests/faults/test_mutations.py``).
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
    "no-rotate-on-delete": "deleting a meeting does not rotate and retire the tenant key",
    "audit-skip": "unwraps of data keys are not written to the audit log",
    "no-tenant-check": "a meeting is found whichever tenant asks for it",
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
}

FAULTS: dict[str, str] = PRIVACY | RECOVERY


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
    return dataclasses.replace(meeting, transcription=True, opted_out=frozenset())


def unrevoked(tenant: Tenant) -> Tenant:
    """``tenant``, or (with ``worker-ignores-revocation``) the tenant as if never revoked."""
    return dataclasses.replace(tenant, revoked=False) if on("worker-ignores-revocation") else tenant
