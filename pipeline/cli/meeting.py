"""``sealscribe meeting ...``"""

from __future__ import annotations

import sys
import time
from enum import StrEnum

import typer
from rich.table import Table

from pipeline import services
from pipeline.cli.output import JsonOption, console, emit, err_console, guarded, runtime
from pipeline.errors import InvalidInput
from pipeline.models import BotState, BotStatus, Meeting
from pipeline.store.meetings import SPEAKERS_TALKING

app = typer.Typer(help="Meetings and their transcription switch.", no_args_is_help=True)


class Switch(StrEnum):
    on = "on"
    off = "off"


def _describe(m: Meeting) -> str:
    state = "[bold green]ON[/]" if m.transcription else "[bold]OFF[/]"
    return (
        f"meeting [bold]{m.id}[/] (tenant {m.tenant_id}): transcription {state}, "
        f"consent {m.consent_mode}"
    )


class ConsentMode(StrEnum):
    notice = "notice"
    opt_in = "opt-in"


@app.command("create")
@guarded
def create(
    tenant: str = typer.Option(..., "--tenant", "-t", help="Tenant id."),
    transcription: Switch = typer.Option(
        Switch.off, "--transcription", help="Transcribe from the start (off by default)."
    ),
    language: str | None = typer.Option(
        None,
        "--language",
        "-l",
        help="Spoken language (ISO 639-1); default: detect (English with tiny.en).",
    ),
    translate: bool = typer.Option(
        False, "--translate", help="Translate speech into English text."
    ),
    consent: ConsentMode = typer.Option(
        ConsentMode.notice,
        "--consent",
        help="notice: transcribed unless they opt out; opt-in: nobody until they consent.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Create a meeting with its own data keys. Transcription is off unless switched on."""
    meeting = services.create_meeting(
        runtime(), tenant, transcription is Switch.on, language, translate, consent.value
    )
    emit(as_json, meeting, lambda: console.print(_describe(meeting)))


@app.command("consent-mode")
@guarded
def consent_mode(
    meeting: str = typer.Argument(..., help="Meeting id."),
    mode: ConsentMode = typer.Argument(..., help="notice or opt-in."),
    as_json: bool = JsonOption,
) -> None:
    """Set the meeting's consent mode, also mid-call: in opt-in, nobody's audio is kept
    until they consent."""
    m = services.set_consent_mode(runtime(), meeting, mode.value)
    emit(as_json, m, lambda: console.print(_describe(m)))


@app.command("consent")
@guarded
def consent(
    meeting: str = typer.Argument(..., help="Meeting id."),
    participant: str = typer.Argument(..., help="The participant's display name."),
    state: Switch = typer.Argument(..., help="on: transcribe them (consent); off: opt out."),
    subject: str | None = typer.Option(None, "--subject", help="Your id for this person."),
    as_json: bool = JsonOption,
) -> None:
    """Record a participant's own choice: opt them out, or in (their consent)."""
    m = services.set_consent(runtime(), meeting, participant, state is Switch.off, subject=subject)
    emit(as_json, m, lambda: console.print(_describe(m)))


@app.command("transcription")
@guarded
def transcription(
    meeting: str = typer.Argument(..., help="Meeting id."),
    state: Switch = typer.Argument(..., help="on or off."),
    as_json: bool = JsonOption,
) -> None:
    """Switch transcription on or off, also mid-call."""
    m = services.set_transcription(runtime(), meeting, state is Switch.on)
    emit(as_json, m, lambda: console.print(_describe(m)))


@app.command("show")
@guarded
def show(
    meeting: str = typer.Argument(..., help="Meeting id."), as_json: bool = JsonOption
) -> None:
    """One meeting's policy."""
    m = services.get_meeting(runtime(), meeting)
    emit(as_json, m, lambda: console.print(_describe(m)))


@app.command("list")
@guarded
def list_(
    tenant: str = typer.Option(..., "--tenant", "-t", help="Tenant id."), as_json: bool = JsonOption
) -> None:
    """A tenant's meetings."""
    meetings = services.list_meetings(runtime(), tenant)

    def human() -> None:
        table = Table("meeting", "created", "transcription", "opted out")
        for m in meetings:
            table.add_row(
                m.id,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(m.created)),
                "on" if m.transcription else "off",
                str(len(m.opted_out)),
            )
        console.print(table)

    emit(as_json, meetings, human)


@app.command("delete")
@guarded
def delete(
    meeting: str = typer.Argument(..., help="Meeting id."),
    yes: bool = typer.Option(False, "--yes", help="Confirm without asking."),
    wait: float = typer.Option(
        30,
        "--wait",
        min=0,
        help="Seconds to wait for a worker to rotate and retire the tenant key (0: do not).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Crypto-shred a meeting: its keys are destroyed, then every record; a worker then
    rotates and retires the tenant key, so backups cannot be opened either. Irreversible."""
    from pipeline.queue import workers_alive
    from pipeline.services.meetings import wait_for_shred

    rt = runtime()
    services.get_meeting(rt, meeting)  # NotFound before asking anything
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput("deleting is irreversible: pass --yes to confirm")
        typer.confirm(f"Destroy meeting {meeting} and everything in it?", abort=True)
    deleted = services.delete_meeting(rt, meeting)
    done = False
    if wait and workers_alive():
        with err_console.status(
            "rotating and retiring the tenant key (a worker does it)", spinner="dots"
        ) as status:

            def progress(waited: float) -> None:
                status.update(f"rotating and retiring the tenant key: {waited:.0f} s")

            done = wait_for_shred(rt, deleted, wait, None if as_json else progress)

    def human() -> None:
        console.print(f"meeting {meeting} crypto-shredded and deleted: its data keys are destroyed")
        if done:
            console.print("the tenant key is rotated and its old versions retired")
        else:
            console.print(
                "rotating the tenant key and retiring its old versions is pending: a "
                "worker does it (a `worker --beat` retries it), after which backups "
                "cannot be opened either; `keys status` shows the versions"
            )

    emit(as_json, {"deleted": meeting, "shredded": done}, human)


@app.command("privacy")
@guarded
def privacy(
    meeting: str = typer.Argument(..., help="Meeting id."), as_json: bool = JsonOption
) -> None:
    """When transcription was on, who opened what and why, what was purged, audit status."""
    from pipeline.services.privacy import INTERIMS_NOTE, privacy_report

    report = privacy_report(runtime(), meeting)

    def when(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))

    def human() -> None:
        console.print(
            f"[bold]privacy report for meeting {report.meeting_id}[/] (tenant {report.tenant_id})"
        )
        console.print(f"transcription now: {'ON' if report.transcription_now else 'OFF'}")
        console.print(
            "speakers: "
            + (
                "from the room's talking events (one mixed track; PRIVACY.md, mixed rooms)"
                if report.speakers == SPEAKERS_TALKING
                else "from each participant's own audio track"
            )
        )
        for at, state, actor in report.switches:
            console.print(f"  {when(at)}  switched {state} by {actor}")
        for at, change, actor in report.consent_changes:
            console.print(f"  {when(at)}  consent {change} by {actor}")
        for at, notice, actor in report.notices:
            console.print(f"  {when(at)}  notice posted ({notice}) by {actor}")
        table = Table("key use (purpose by actor: outcome)", "count")
        for use, n in sorted(report.key_uses.items()):
            table.add_row(use, str(n))
        console.print(table)
        purged = ", ".join(f"{n} {why}" for why, n in sorted(report.purged.items())) or "none"
        console.print(f"segments purged untranscribed: {purged}")
        dropped = ", ".join(f"{n} {why}" for why, n in report.interims_purged.items()) or "none"
        console.print(
            f"interim captions: {report.interims_transcribed} transcribed; "
            f"purged untranscribed: {dropped}"
        )
        console.print(f"  ({INTERIMS_NOTE})")
        console.print(
            f"stored now: {report.transcript_segments} sealed transcript segments, "
            f"{report.audio_pending} sealed audio segments waiting"
        )
        chain = "[green]intact[/]" if report.audit_intact else "[bold red]TAMPERED[/]"
        console.print(f"audit chain: {chain}")
        for problem in report.audit_problems:
            console.print(f"  {problem}")
        stored = "[green]complete[/]" if report.complete else "[bold red]INCOMPLETE[/]"
        console.print(f"stored content: {stored} (see 'meeting verify')")
        for missing in report.missing:
            console.print(f"  {missing}", markup=False)

    emit(as_json, report, human)


@app.command("verify")
@guarded
def verify(
    meeting: str = typer.Argument(..., help="Meeting id."), as_json: bool = JsonOption
) -> None:
    """Check the meeting's manifests with your key: every sealed segment stored,
    transcribed, purged or expired, or named as missing. Exit 1 if anything is missing."""
    record = services.verify_meeting(runtime(), meeting)

    def human() -> None:
        verdict = "[green]complete[/]" if record.complete else "[bold red]INCOMPLETE[/]"
        console.print(f"meeting {record.meeting_id}: {verdict}")
        table = Table(
            "participant", "sealed", "transcribed", "purged", "pending", "expired", "anchored"
        )
        for p in record.participants:
            if p.erased:
                table.add_row(p.participant, "erased", "", "", "", "", "")
                continue
            purged = ", ".join(f"{n} {why}" for why, n in sorted(p.purged.items())) or "0"
            anchored = "no" if p.anchored is None else f"{p.anchored} of {p.records}"
            table.add_row(
                p.participant,
                str(p.sealed),
                str(p.transcribed),
                purged,
                str(p.pending),
                str(p.expired),
                anchored,
            )
        console.print(table)
        for missing in record.missing:
            console.print(f"[bold red]missing:[/] {missing}", highlight=False)
        for note in record.notes:
            console.print(f"note: {note}")

    emit(as_json, record, human)
    if not record.complete:
        raise typer.Exit(1)


def _bot_line(b: BotStatus) -> str:
    colour = {"in_meeting": "green", "failed": "red", "reconnecting": "yellow"}.get(
        b.state.value, "white"
    )
    line = f"bot in {b.target}: [bold {colour}]{b.state.value.replace('_', ' ')}[/]"
    if b.reason:
        line += f" ({b.reason})"
    if b.participants:
        line += f"; hearing {', '.join(b.participants)}"
    return line


@app.command("join")
@guarded
def join(
    meeting: str = typer.Argument(..., help="Meeting id."),
    url: str = typer.Argument(..., help="janus://HOST:PORT/ROOM[?pin=...&secret=...]"),
    wait: float = typer.Option(
        0, "--wait", min=0, help="Seconds to wait for the bot to be in the meeting."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Send the bot into a meeting (a `sealscribe bots` process carries it out)."""
    from pipeline.services.bots import bot_status, join_meeting

    rt = runtime()
    status = join_meeting(rt, meeting, url)
    deadline = time.monotonic() + wait
    while wait and not status.state.final and status.state is not BotState.IN_MEETING:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
        status = bot_status(rt, meeting)
    emit(as_json, status, lambda: console.print(_bot_line(status)))
    if status.state is BotState.FAILED:
        raise typer.Exit(1)


@app.command("leave")
@guarded
def leave(
    meeting: str = typer.Argument(..., help="Meeting id."), as_json: bool = JsonOption
) -> None:
    """Call the bot back from a meeting."""
    from pipeline.services.bots import leave_meeting

    status = leave_meeting(runtime(), meeting)
    emit(as_json, status, lambda: console.print(_bot_line(status)))


@app.command("bot")
@guarded
def bot(meeting: str = typer.Argument(..., help="Meeting id."), as_json: bool = JsonOption) -> None:
    """Where the meeting's bot is: joining, in meeting, reconnecting, left, failed (why)."""
    from pipeline.services.bots import bot_status

    status = bot_status(runtime(), meeting)
    emit(as_json, status, lambda: console.print(_bot_line(status)))
