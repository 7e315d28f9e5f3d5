"""What the bot tells a meeting's chat, and the participants' own commands there.

Written notices: on joining, when transcription is switched on or off, when the consent mode
changes, and at each participant's consent change. Commands, each applied to the participant
who typed it (their display name is their participant id, as for their audio): ``/optout``,
``/optin`` and ``/status``. Every notice posted and every consent change is in the audit log
(and so in the meeting's privacy report); the texts name participants, never content.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.audio.announce import default_pcm
from pipeline.errors import OURS
from pipeline.models import CONSENT_OPT_IN, Meeting
from pipeline.runtime import Runtime
from pipeline.services.meetings import set_consent

__all__ = ["HELP", "Told", "announcement", "changes", "command", "joined", "record"]

HELP = "Type /optout to keep your voice out, /optin to be transcribed, /status to check."

Told = tuple[bool, str, frozenset[str], frozenset[str]]


def _mode(meeting_mode: str) -> str:
    if meeting_mode == CONSENT_OPT_IN:
        return "Nobody is transcribed until they consent (/optin)."
    return "Everyone is transcribed unless they opt out (/optout)."


def joined(meeting: Meeting) -> str:
    state = "ON" if meeting.transcription else "OFF"
    return (
        f"sealscribe is in this meeting to transcribe it. Transcription is {state}. "
        f"{_mode(meeting.consent_mode)} {HELP}"
    )


def changes(before: Told, now: Told) -> Iterator[tuple[str, str]]:
    """(kind, text) of each notice that the change from ``before`` to ``now`` calls for."""
    if before[0] != now[0]:
        yield (
            ("on", "Transcription is now ON. " + HELP)
            if now[0]
            else ("off", "Transcription is now OFF: nothing said is kept.")
        )
    if before[1] != now[1]:
        yield "mode", f"The consent mode is now {now[1]}. {_mode(now[1])}"
    opted_out, opted_in = now[2] - before[2], (now[3] - before[3]) | (before[2] - now[2])
    for name in sorted(opted_out):
        yield "consent", f"{name} opted out of transcription: nothing they say is kept."
    for name in sorted(opted_in - now[2]):
        yield "consent", f"{name} opted in: they are transcribed while it is on."


def announcement(rt: Runtime, meeting_id: str, kind: str) -> bytes:
    """What the bot says aloud for ``kind`` (join, on, off): the tenant's own, or the
    packaged default, as 16 kHz mono PCM."""
    meeting = rt.store.meetings.get(meeting_id)
    own = rt.store.tenants.announcement(meeting.tenant_id, kind)
    return own if own is not None else default_pcm(kind)


def record(rt: Runtime, meeting_id: str, channel: str, kind: str) -> None:
    """Audit a notice posted to the meeting (``channel``: text or voice)."""
    meeting = rt.store.meetings.get(meeting_id)
    rt.keys.audit.record(
        meeting.tenant_id, "notice", actor=rt.actor, outcome=f"{channel}:{kind}", meeting=meeting_id
    )


def command(rt: Runtime, meeting_id: str, participant: str, text: str) -> str:
    """Apply a participant's own chat command to themselves; the answer to whisper back."""
    word = text.split()[0].lower() if text.split() else ""
    try:
        if word == "/optout":
            set_consent(rt, meeting_id, participant, True, via="chat")
            return (
                f"{participant}: you opted out. Nothing you say is kept from now on. "
                "/optin to undo."
            )
        if word == "/optin":
            set_consent(rt, meeting_id, participant, False, via="chat")
            meeting = rt.store.meetings.get(meeting_id)
            when = "" if meeting.transcription else " once transcription is switched on"
            return f"{participant}: you are transcribed{when}. /optout to stop."
        if word == "/status":
            meeting = rt.store.meetings.get(meeting_id)
            if meeting.transcribes(participant):
                return f"{participant}: you are being transcribed."
            if participant in meeting.opted_out:
                return f"{participant}: you opted out; nothing you say is kept."
            if not meeting.transcription:
                return f"{participant}: transcription is OFF; nothing is kept."
            return (
                f"{participant}: you have not consented; nothing you say is kept. "
                "/optin to consent."
            )
    except OURS as exc:
        return f"That did not work ({type(exc).__name__}); try again in a moment."
    return f"Unknown command. {HELP}"
