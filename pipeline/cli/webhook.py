"""``sealscribe webhook ...``: a tenant's webhook endpoints, their delivery log and replay.

The operator's side of ``/v1/webhooks``: the same service functions, for the tenant named
by ``--tenant``. A secret is printed once, when made or rotated; Redis keeps it sealed.
"""

from __future__ import annotations

import datetime

import typer
from rich.table import Table

from pipeline.cli.output import JsonOption, console, emit, guarded, runtime
from pipeline.services import webhooks
from pipeline.store.webhooks import Endpoint

app = typer.Typer(
    help="Webhook endpoints: add, list, remove, rotate-secret, log, replay. Events carry ids, "
    "states and counts, never content; requests are signed per Standard Webhooks.",
    no_args_is_help=True,
)
TenantOption = typer.Option(..., "--tenant", "-t", help="Tenant id.")


def _when(at: float) -> str:
    if not at:
        return "-"
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _state(e: Endpoint) -> str:
    if e.disabled:
        return f"[bold red]DISABLED[/] {e.disabled}"
    if e.failing_since:
        return f"[yellow]failing since {_when(e.failing_since)}[/]"
    return "[green]enabled[/]"


def _print_secret(verb: str, e: Endpoint, secret: str) -> None:
    console.print(f"webhook [bold]{e.id}[/] {verb}: {e.url}", highlight=False, markup=True)
    console.print(
        f"signing secret (shown once, keep it secret): {secret}", highlight=False, soft_wrap=True
    )


@app.command("add")
@guarded
def add(
    url: str = typer.Argument(..., help="Where events are POSTed (https://...)."),
    tenant: str = TenantOption,
    event: list[str] = typer.Option(
        [],
        "--event",
        "-e",
        help="An event type to receive (repeat for more; default: all): "
        f"{', '.join(webhooks.EVENTS)}.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Add an endpoint; prints its signing secret (once)."""
    endpoint, secret = webhooks.add_endpoint(runtime(), tenant, url, event)
    emit(
        as_json,
        {"endpoint": endpoint, "secret": secret},
        lambda: _print_secret("added", endpoint, secret),
    )


@app.command("list")
@guarded
def list_(tenant: str = TenantOption, as_json: bool = JsonOption) -> None:
    """Every endpoint of the tenant, with its state (never a secret)."""
    rt = runtime()
    found = webhooks.list_endpoints(rt, tenant)

    def human() -> None:
        table = Table("id", "url", "events", "state", "waiting")
        for e in found:
            table.add_row(
                e.id, e.url, ",".join(e.events), _state(e), str(rt.store.webhooks.waiting(e.id))
            )
        console.print(table)

    emit(as_json, found, human)


@app.command("remove")
@guarded
def remove(
    endpoint_id: str = typer.Argument(..., help="Endpoint id (wh_...)."),
    tenant: str = TenantOption,
    as_json: bool = JsonOption,
) -> None:
    """Remove an endpoint, its waiting events and its log."""
    endpoint = webhooks.remove_endpoint(runtime(), endpoint_id, tenant)
    emit(as_json, {"removed": endpoint.id}, lambda: console.print(f"removed {endpoint.id}"))


@app.command("rotate-secret")
@guarded
def rotate_secret(
    endpoint_id: str = typer.Argument(..., help="Endpoint id (wh_...)."),
    tenant: str = TenantOption,
    as_json: bool = JsonOption,
) -> None:
    """A new signing secret (printed once); the old one keeps signing for 24 hours."""
    endpoint, secret = webhooks.rotate_secret(runtime(), endpoint_id, tenant)
    emit(
        as_json,
        {"endpoint": endpoint, "secret": secret},
        lambda: _print_secret("has a new secret", endpoint, secret),
    )


@app.command("log")
@guarded
def log(
    endpoint_id: str = typer.Argument(..., help="Endpoint id (wh_...)."),
    tenant: str = TenantOption,
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    as_json: bool = JsonOption,
) -> None:
    """The latest delivery attempts, newest first: outcome, status code, next try."""
    attempts = webhooks.delivery_log(runtime(), endpoint_id, tenant, limit)

    def human() -> None:
        table = Table("at", "message", "event", "meeting", "try", "outcome", "status", "next try")
        for a in attempts:
            table.add_row(
                _when(a.at),
                a.message_id,
                a.event,
                a.meeting_id or "-",
                str(a.attempt),
                a.outcome + (f" ({a.error})" if a.error else ""),
                str(a.status or "-"),
                _when(a.next_try),
            )
        console.print(table)

    emit(as_json, attempts, human)


@app.command("replay")
@guarded
def replay(
    endpoint_id: str = typer.Argument(..., help="Endpoint id (wh_...)."),
    tenant: str = TenantOption,
    message: str | None = typer.Option(
        None, "--message", "-m", help="Send this kept message (msg_...) again."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Re-enable a disabled endpoint and send again: one message, or all waiting now."""
    streams = webhooks.replay(runtime(), endpoint_id, tenant, message)
    emit(
        as_json,
        {"endpoint": endpoint_id, "streams": streams},
        lambda: console.print(f"{endpoint_id}: {streams} stream(s) scheduled for delivery"),
    )
