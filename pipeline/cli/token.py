"""``sealscribe token ...``: a tenant's named API tokens, with scopes and an optional expiry.

The operator's side of ``/v1/tokens``: the same service functions, for the tenant named by
``--tenant``. A token is printed once, when made or rotated; only its SHA-256 is stored.
"""

from __future__ import annotations

import datetime

import typer
from rich.table import Column, Table

from pipeline.cli.output import JsonOption, console, emit, guarded, runtime
from pipeline.models import ApiToken, Scope
from pipeline.services import tokens

app = typer.Typer(
    help="A tenant's API tokens: create, list, revoke, rotate. Scopes: admin (keys, erasure, "
    "tokens; holds the others), meetings (meetings, bots, WHIP, live captions), read "
    "(meetings, transcripts, live captions).",
    no_args_is_help=True,
)
TenantOption = typer.Option(..., "--tenant", "-t", help="Tenant id.")


def _when(at: float | None) -> str:
    if at is None:
        return "never"
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _shown(info: ApiToken, token: str) -> dict[str, object]:
    return {
        "id": info.id,
        "name": info.name,
        "scopes": sorted(info.scopes),
        "created": info.created,
        "expires": info.expires,
        "token": token,
    }


def _print_new(verb: str, info: ApiToken, token: str) -> None:
    console.print(
        f"token [bold]{info.id}[/] ({info.name}) {verb}: scopes {', '.join(sorted(info.scopes))}"
        f", expires {_when(info.expires)}",
        highlight=False,
    )
    console.print(
        f"API token (shown once, keep it secret): {token}", highlight=False, soft_wrap=True
    )


@app.command("create")
@guarded
def create(
    name: str = typer.Argument(..., help="A name for the token, e.g. what uses it."),
    tenant: str = TenantOption,
    scope: list[Scope] = typer.Option(
        ..., "--scope", "-s", help="A scope the token holds (repeat for more)."
    ),
    expires_in: str | None = typer.Option(
        None, "--expires-in", help="Lifetime: seconds, or with a unit: 90m, 12h, 30d."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Make a named token with the given scopes; prints it (once)."""
    lifetime = tokens.parse_duration(expires_in) if expires_in is not None else None
    info, token = tokens.create_token(runtime(), tenant, name, scope, lifetime)
    emit(as_json, _shown(info, token), lambda: _print_new("created", info, token))


@app.command("list")
@guarded
def list_(tenant: str = TenantOption, as_json: bool = JsonOption) -> None:
    """The tenant's tokens (never the tokens themselves)."""
    found = tokens.list_tokens(runtime(), tenant)

    def human() -> None:
        table = Table("name", "scopes", "created", "expires")
        table.columns.insert(0, Column("id", no_wrap=True))
        for t in found:
            table.add_row(
                t.id, t.name, ", ".join(sorted(t.scopes)), _when(t.created), _when(t.expires)
            )
        console.print(table)

    emit(as_json, found, human)


@app.command("revoke")
@guarded
def revoke(
    token_id: str = typer.Argument(..., help="Token id (tk_...), as `token list` shows it."),
    tenant: str = TenantOption,
    as_json: bool = JsonOption,
) -> None:
    """The token stops working at once (its caption sockets close within seconds). The
    tenant's last admin token cannot be revoked: make another first, or rotate it."""
    info = tokens.revoke_token(runtime(), tenant, token_id)
    emit(as_json, info, lambda: console.print(f"token {info.id} ({info.name}) revoked"))


@app.command("rotate")
@guarded
def rotate(
    token_id: str = typer.Argument(..., help="Token id (tk_...), as `token list` shows it."),
    tenant: str = TenantOption,
    as_json: bool = JsonOption,
) -> None:
    """A new secret for the token (same id, name, scopes and lifetime); prints it (once).
    The old secret stops working at once."""
    info, token = tokens.rotate_token(runtime(), tenant, token_id)
    emit(as_json, _shown(info, token), lambda: _print_new("rotated", info, token))
