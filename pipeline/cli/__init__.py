"""The ``sealscribe`` command line: a thin layer over :mod:`pipeline.services`."""

from __future__ import annotations

import typer

from pipeline.cli import audit, keys, meeting, tenant

__all__ = ["app", "main"]

app = typer.Typer(
    name="sealscribe",
    help="Privacy-preserving meeting transcription: audio sealed with a key you hold.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # a traceback could show locals holding content
)
app.add_typer(tenant.app, name="tenant")
app.add_typer(keys.app, name="keys")
app.add_typer(meeting.app, name="meeting")
app.add_typer(audit.app, name="audit")


def main() -> None:
    app()
