"""``sealscribe participant ...``: one person across a tenant's meetings (erasure, subject ids)."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.table import Table

from pipeline import services
from pipeline.cli.output import JsonOption, console, emit, guarded, runtime
from pipeline.errors import InvalidInput

app = typer.Typer(
    help="One person across a tenant's meetings: erase them, or attach your id for them.",
    no_args_is_help=True,
)


@app.command("erase")
@guarded
def erase(
    name: str | None = typer.Argument(None, help="The participant's display name."),
    tenant: str = typer.Option(..., "--tenant", "-t", help="Tenant id."),
    subject: str | None = typer.Option(
        None, "--subject", help="Erase whoever carries this subject id (instead of a name)."
    ),
    receipt: Path | None = typer.Option(
        None, "--receipt", "-o", help="Write the erasure receipt to this (new) file."
    ),
    yes: bool = typer.Option(False, "--yes", help="Do not ask; erasure is irreversible."),
    as_json: bool = JsonOption,
) -> None:
    """Erase one person from every meeting of the tenant: their data keys destroyed, their
    audio and transcripts deleted, the tenant key rotated and retired. Everyone else's
    content stays readable. Prints (and with --receipt writes) an authenticated receipt."""
    if receipt is not None and (receipt.exists() or not receipt.parent.is_dir()):
        raise InvalidInput(f"{receipt} exists or its directory does not; choose a new file")
    who = name if name is not None else f"subject {subject}"
    if not yes and not as_json:
        typer.confirm(
            f"Erase {who} from every meeting of {tenant}? This cannot be undone", abort=True
        )
    done = services.erase_participant(runtime(), tenant, name, subject)
    if receipt is not None:
        fd = os.open(receipt, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(done.to_json() + "\n")

    def human() -> None:
        table = Table("meeting", "participant", "audio", "transcripts", "keys")
        for m in done.meetings:
            keys = "shredded" if m.keys_shredded else "shared (deleted only)"
            table.add_row(
                m.meeting,
                m.participant,
                str(m.audio_segments),
                str(m.transcript_segments),
                keys,
            )
        console.print(f"erased {who} from {len(done.meetings)} meetings of {tenant}")
        if done.meetings:
            console.print(table)
        if done.key_version is not None:
            console.print(f"tenant key rotated and retired: primary version {done.key_version}")
        elif done.meetings:
            console.print("the tenant key's rotation is pending (a worker's beat finishes it)")
        if receipt is not None:
            console.print(
                f"receipt written to {receipt} (check it: sealscribe audit verify-receipt)"
            )

    emit(as_json, done, human)


@app.command("subject")
@guarded
def subject(
    meeting: str = typer.Option(..., "--meeting", "-m", help="Meeting id."),
    name: str = typer.Argument(..., help="The participant's display name in that meeting."),
    subject_id: str = typer.Argument(..., help="Your id for this person."),
    as_json: bool = JsonOption,
) -> None:
    """Attach your own id for a participant of a meeting (erase them later by it)."""
    m = services.set_subject(runtime(), meeting, name, subject_id)
    emit(
        as_json,
        {"meeting": m.id, "participant": name, "subject": subject_id},
        lambda: console.print(f"{name} in {m.id} is subject {subject_id}", markup=False),
    )


@app.command("link")
@guarded
def link(
    meeting: str = typer.Option(..., "--meeting", "-m", help="Meeting id."),
    name: str = typer.Argument(..., help="The participant's display name in that meeting."),
    base: str = typer.Option(
        "http://127.0.0.1:8080", "--base", help="The API's public base URL (the page is there)."
    ),
    ttl: int = typer.Option(86_400, "--ttl", help="Seconds the link works (60 to a week)."),
    subject_id: str | None = typer.Option(None, "--subject", help="Your id for this person."),
    as_json: bool = JsonOption,
) -> None:
    """A signed, expiring link to a page where this participant alone opts out or in."""
    if not base.startswith(("http://", "https://")):
        raise InvalidInput("--base must start with http:// or https://")
    made = services.make_link(runtime(), meeting, name, ttl=ttl, subject=subject_id)
    url = f"{base.rstrip('/')}/consent/{made.token}"
    emit(
        as_json,
        {"url": url, "participant": made.participant, "expires": made.expires},
        lambda: console.print(url, markup=False, highlight=False, soft_wrap=True),
    )
