"""``sealscribe tenant ...``"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from pipeline import services
from pipeline.cli.output import JsonOption, console, emit, guarded, runtime
from pipeline.errors import InvalidInput

app = typer.Typer(help="Tenants (customers) and their API tokens.", no_args_is_help=True)


@app.command("create")
@guarded
def create(
    name: str = typer.Argument(..., help="Display name of the tenant."), as_json: bool = JsonOption
) -> None:
    """Create a tenant with its own key; prints the tenant id and its API token (once)."""
    tenant, token = services.create_tenant(runtime(), name)

    def human() -> None:
        console.print(f"tenant [bold]{tenant.id}[/] created ({tenant.name})")
        console.print(
            f"API token (shown once, keep it secret): {token}", highlight=False, soft_wrap=True
        )

    emit(as_json, {"tenant": tenant, "token": token}, human)


@app.command("list")
@guarded
def list_(as_json: bool = JsonOption) -> None:
    """List tenants."""
    tenants = services.list_tenants(runtime())

    def human() -> None:
        table = Table("tenant", "name")
        for t in tenants:
            table.add_row(t.id, t.name)
        console.print(table)

    emit(as_json, tenants, human)


@app.command("export")
@guarded
def export(
    tenant: str = typer.Argument(..., help="Tenant id."),
    out: Path = typer.Option(..., "--out", "-o", help="The ZIP archive to write."),
    as_json: bool = JsonOption,
) -> None:
    """Everything the tenant owns in one archive: transcripts (JSON, WebVTT), meeting
    metadata, audit log. Opened with the tenant's key, purpose `deliver`."""
    report = services.export_tenant(runtime(), tenant, out)
    emit(
        as_json,
        report,
        lambda: console.print(
            f"wrote {report.path}: {report.meetings} meetings, {report.transcript_segments} "
            f"transcript segments, {report.audit_entries} audit entries"
        ),
    )


@app.command("erase")
@guarded
def erase(
    tenant: str = typer.Argument(..., help="Tenant id."),
    yes: bool = typer.Option(False, "--yes", help="Confirm without asking."),
    as_json: bool = JsonOption,
) -> None:
    """Crypto-shred every data key, delete every record, revoke the key. Irreversible."""
    rt = runtime()
    services.get_tenant(rt, tenant)
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput("erasing is irreversible: pass --yes to confirm")
        typer.confirm(f"Erase tenant {tenant} and everything it owns?", abort=True)
    report = services.erase_tenant(rt, tenant)
    emit(
        as_json,
        report,
        lambda: console.print(
            f"tenant {tenant} erased: {report.meetings} meetings shredded, key revoked"
        ),
    )


@app.command("retention")
@guarded
def retention(
    tenant: str = typer.Argument(..., help="Tenant id."),
    transcripts: int | None = typer.Option(
        None, "--transcripts", help="Seconds a transcript is kept."
    ),
    audio: int | None = typer.Option(
        None, "--audio", help="Longest seconds audio may wait untranscribed."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Show or set how long the tenant's content may live (applies to new content)."""
    from pipeline.services.retention import set_retention

    kept = set_retention(runtime(), tenant, transcripts, audio)
    emit(
        as_json,
        kept,
        lambda: console.print(
            f"tenant {tenant}: transcripts kept {kept.transcript_ttl} s, audio waits at most "
            f"{kept.audio_ttl} s"
        ),
    )


@app.command("announcement")
@guarded
def announcement(
    tenant: str = typer.Argument(..., help="Tenant id."),
    kind: str = typer.Argument(..., help="join, on or off."),
    text: str | None = typer.Option(None, "--text", help="Spoken by espeak-ng."),
    file: Path | None = typer.Option(None, "--file", help="An audio file (at most 30 s)."),
    default: bool = typer.Option(False, "--default", help="Go back to the default."),
    as_json: bool = JsonOption,
) -> None:
    """What the tenant's bot says aloud when it joins, or when transcription goes on or off."""
    if default == (text is not None or file is not None):
        raise InvalidInput("give --text, --file, or --default")
    audio = None
    if file is not None:
        try:
            audio = file.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read {file}: {exc.strerror}") from None
    kinds = services.set_announcement(runtime(), tenant, kind, text, audio)
    emit(as_json, kinds, lambda: console.print(", ".join(f"{k}: {v}" for k, v in kinds.items())))
