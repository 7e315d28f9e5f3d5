"""``sealscribe store ...``: the store's own upkeep."""

from __future__ import annotations

import typer

from pipeline.cli.output import JsonOption, console, emit, guarded, runtime
from pipeline.store.migrate import migrate as migrate_keys

app = typer.Typer(help="The store's upkeep (Redis).", no_args_is_help=True)


@app.command("migrate")
@guarded
def migrate(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Count what would change; change nothing."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Rename keys written before the Redis Cluster hash tags (once, when upgrading).

    Stop every sealscribe process first. Safe to run again; it never overwrites a key."""
    rt = runtime()
    with console.status("looking at keys...") as status:
        report = migrate_keys(
            rt.store.redis,
            rt.settings.redis_url,
            dry_run=dry_run,
            progress=lambda n: status.update(f"looked at {n} keys"),
        )

    def human() -> None:
        verb = "would rename" if dry_run else "renamed"
        console.print(
            f"{verb} {report.renamed} keys, dropped {report.dropped} lapsing leases, "
            f"{report.unchanged} already right"
        )
        if report.conflicts:
            console.print(
                f"[red]{len(report.conflicts)} keys kept under their old name: the new name "
                "is taken (was a new version already running?); --json lists them[/red]"
            )

    emit(as_json, report, human)
    if report.conflicts:
        raise typer.Exit(1)
