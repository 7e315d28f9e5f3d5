"""``sealscribe audit ...``: the hash-chained key-use log."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from pipeline import services
from pipeline.cli.output import JsonOption, console, emit, guarded, runtime

app = typer.Typer(help="Every use of a tenant's key, hash-chained.", no_args_is_help=True)
TenantOption = typer.Option(..., "--tenant", "-t", help="Tenant id.")


@app.command("show")
@guarded
def show(
    tenant: str = TenantOption,
    offset: int = typer.Option(0, "--offset", min=0, help="First entry to show."),
    limit: int = typer.Option(100, "--limit", min=1, max=10000, help="Entries to show."),
    as_json: bool = JsonOption,
) -> None:
    """Show audit entries, oldest first."""
    entries = services.audit_show(runtime(), tenant, offset, limit)

    def human() -> None:
        table = Table(
            "#", "time (UTC)", "action", "purpose", "meeting", "version", "outcome", "actor"
        )
        for e in entries:
            table.add_row(
                str(e.seq),
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.at)),
                e.action,
                e.purpose or "",
                e.meeting or "",
                "" if e.key_version is None else str(e.key_version),
                e.outcome,
                e.actor,
            )
        console.print(table)

    emit(as_json, entries, human)


@app.command("verify")
@guarded
def verify(tenant: str = TenantOption, as_json: bool = JsonOption) -> None:
    """Check the chain; exit 1 and name each edited, inserted or deleted entry."""
    report = services.audit_verify(runtime(), tenant)

    def human() -> None:
        if report.ok:
            console.print(f"[green]audit log intact[/]: {report.entries} entries")
        for problem in report.problems:
            console.print(f"[bold red]tampered:[/] {problem}")

    emit(as_json, report, human)
    if not report.ok:
        raise typer.Exit(1)
