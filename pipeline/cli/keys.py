"""``sealscribe keys ...``: the tenant's key, which the customer controls."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from pipeline import services
from pipeline.cli.output import JsonOption, console, emit, guarded, runtime
from pipeline.errors import InvalidInput

app = typer.Typer(
    help="Customer-held keys: status, rotate, retire, revoke, import.", no_args_is_help=True
)
TenantOption = typer.Option(..., "--tenant", "-t", help="Tenant id.")


@app.command("status")
@guarded
def status(tenant: str = TenantOption, as_json: bool = JsonOption) -> None:
    """Key versions, state, and how many data keys each version wraps."""
    report = services.key_status(runtime(), tenant)
    s = report.status

    def human() -> None:
        state = "[bold red]REVOKED[/]" if s.revoked else "[green]active[/]"
        console.print(
            f"tenant {s.tenant_id}: provider {s.provider}, key {state}, primary "
            f"version {s.primary_version}, usable from version {s.min_version}"
        )
        table = Table("version", "data keys wrapped")
        for v in sorted(set(s.versions) | set(report.wrapped_by_version)):
            table.add_row(str(v), str(report.wrapped_by_version.get(v, 0)))
        console.print(table)

    emit(as_json, report, human)


@app.command("rotate")
@guarded
def rotate(tenant: str = TenantOption, as_json: bool = JsonOption) -> None:
    """New primary key version; every data key is rewrapped (no content re-encrypted).
    Interrupted? Run it again: it resumes."""
    report = services.rotate_keys(runtime(), tenant)
    emit(
        as_json,
        report,
        lambda: console.print(
            f"primary version is now {report.primary_version}; {report.rewrapped} data keys "
            "rewrapped"
        ),
    )


@app.command("retire")
@guarded
def retire(
    tenant: str = TenantOption,
    below: int = typer.Option(..., "--below", help="Retire every version below this."),
    as_json: bool = JsonOption,
) -> None:
    """Make old key versions unusable; every data key is moved off them first."""
    moved = services.retire_keys(runtime(), tenant, below)
    emit(
        as_json,
        {"retired_below": below, "rewrapped": moved},
        lambda: console.print(
            f"versions below {below} retired ({moved} data keys rewrapped first)"
        ),
    )


@app.command("revoke")
@guarded
def revoke(
    tenant: str = TenantOption,
    yes: bool = typer.Option(False, "--yes", help="Confirm without asking."),
    as_json: bool = JsonOption,
) -> None:
    """Kill switch: nothing of the tenant can be opened afterwards. Irreversible."""
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput("revoking is irreversible: pass --yes to confirm")
        typer.confirm(
            f"Revoke every key of tenant {tenant}? Nothing of it can be opened afterwards",
            abort=True,
        )
    services.revoke_keys(runtime(), tenant)
    emit(
        as_json,
        {"revoked": tenant},
        lambda: console.print(
            f"the key of tenant {tenant} is revoked: nothing of it can be opened"
        ),
    )


@app.command("import")
@guarded
def import_(
    tenant: str = TenantOption,
    file: str = typer.Option(
        ..., "--file", "-f", help="Key file (32 raw bytes, hex or base64); - for stdin."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Bring your own key: it becomes the primary version; every data key is rewrapped."""
    if file == "-":
        material = sys.stdin.buffer.read()
    else:
        path = Path(file)
        if not path.is_file():
            raise InvalidInput(f"key file {path} does not exist or is not a file")
        material = path.read_bytes()
    report = services.import_key(runtime(), tenant, material)
    emit(
        as_json,
        report,
        lambda: console.print(
            f"imported key is primary version {report.primary_version}; {report.rewrapped} data "
            "keys rewrapped"
        ),
    )


@app.command("migrate")
@guarded
def migrate(
    tenant: str = TenantOption,
    to: str = typer.Option(..., "--to", help="local or transit"),
    as_json: bool = JsonOption,
) -> None:
    """Move the tenant's key custody to another provider; every data key is rewrapped in
    memory, content is not re-encrypted. Interrupted? Run it again: it resumes."""
    report = services.migrate_keys(runtime(), tenant, to)
    emit(
        as_json,
        report,
        lambda: console.print(
            f"tenant {tenant} now keyed by {to} (version {report.primary_version}); "
            f"{report.rewrapped} data keys moved"
        ),
    )
