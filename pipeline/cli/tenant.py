"""``sealscribe tenant ...``"""

from __future__ import annotations

import typer
from rich.table import Table

from pipeline import services
from pipeline.cli.output import JsonOption, console, emit, guarded, runtime

app = typer.Typer(help="Tenants (customers) and their API tokens.", no_args_is_help=True)


@app.command("create")
@guarded
def create(name: str = typer.Argument(..., help="Display name of the tenant."),
           as_json: bool = JsonOption) -> None:
    """Create a tenant with its own key; prints the tenant id and its API token (once)."""
    tenant, token = services.create_tenant(runtime(), name)

    def human() -> None:
        console.print(f"tenant [bold]{tenant.id}[/] created ({tenant.name})")
        console.print(f"API token (shown once, keep it secret): {token}", highlight=False,
                      soft_wrap=True)

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
