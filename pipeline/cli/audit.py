"""``sealscribe audit ...``: the keyed, hash-chained key-use log, its heads, and erasure
receipts."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from keys.audit import AuditHead
from pipeline import services
from pipeline.cli.output import JsonOption, console, emit, guarded, runtime
from pipeline.errors import InvalidInput

app = typer.Typer(
    help="Every use of a tenant's key, hash-chained and MACed with the tenant's key.",
    no_args_is_help=True,
)
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


@app.command("head")
@guarded
def head(
    tenant: str = TenantOption,
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Also write the head to this file (keep it outside sealscribe)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """The chain's newest entry (position, hash, MAC, time): keep it, and later prove with
    'audit verify --since' that nothing before it was cut off or rewritten."""
    found = services.audit_head(runtime(), tenant)
    if out is not None:
        _write_new(out, found.to_json() + "\n")

    def human() -> None:
        console.print(
            f"audit head of {tenant}: entry {found.seq} written "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(found.at))} UTC\n"
            f"  hash {found.hash}\n  mac  {found.mac or '(none: an unkeyed chain)'}"
        )
        if out is not None:
            console.print(f"written to {out}")

    emit(as_json, found, human)


def _write_new(path: Path, text: str) -> None:
    if path.exists():
        raise InvalidInput(f"{path} already exists; choose a new file name")
    if not path.parent.is_dir():
        raise InvalidInput(f"the directory {path.parent} does not exist")
    path.write_text(text)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the {what} {path}: {exc.strerror}") from None


@app.command("verify")
@guarded
def verify(
    tenant: str = TenantOption,
    since: Path | None = typer.Option(
        None, "--since", help="A head saved with 'audit head --out': the chain must extend it."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Check the chain (hashes, every MAC, and the saved head); exit 1 and name each edited,
    inserted, deleted or cut-off entry."""
    saved = AuditHead.from_json(_read(since, "saved head")) if since is not None else None
    report = services.audit_verify(runtime(), tenant, saved)

    def human() -> None:
        if report.ok:
            against = f", extending the saved head (entry {saved.seq})" if saved else ""
            console.print(
                f"[green]audit log intact[/]: {report.entries} entries, "
                f"{report.authenticated} covered by the tenant key's MAC{against}"
            )
        for note in report.notes:
            console.print(f"note: {note}")
        for problem in report.problems:
            console.print(f"[bold red]tampered:[/] {problem}")

    emit(as_json, report, human)
    if not report.ok:
        raise typer.Exit(1)


@app.command("migrate")
@guarded
def migrate(tenant: str = TenantOption, as_json: bool = JsonOption) -> None:
    """Key a chain from before keyed audit now: one MACed entry covers every entry before it."""
    entry = services.audit_migrate(runtime(), tenant)
    emit(as_json, entry, lambda: console.print(f"audit chain keyed from entry {entry.seq}"))


@app.command("verify-receipt")
@guarded
def verify_receipt(
    receipt: Path = typer.Argument(..., help="An erasure receipt from 'participant erase'."),
    as_json: bool = JsonOption,
) -> None:
    """Check an erasure receipt's MAC with the tenant's key; exit 1 if it was changed."""
    report = services.verify_receipt(runtime(), _read(receipt, "receipt"))

    def human() -> None:
        if report.ok:
            console.print(
                f"[green]receipt authentic[/]: {report.receipt.subject} erased from "
                f"{len(report.receipt.meetings)} meetings of {report.receipt.tenant}"
            )
        for problem in report.problems:
            console.print(f"[bold red]not authentic:[/] {problem}")

    emit(as_json, report, human)
    if not report.ok:
        raise typer.Exit(1)
