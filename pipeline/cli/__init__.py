"""The ``sealscribe`` command line: a thin layer over :mod:`pipeline.services`."""

from __future__ import annotations

import os

import typer

from pipeline.cli import (
    audit,
    keys,
    meeting,
    participant,
    serve,
    store,
    tenant,
    token,
    webhook,
    work,
)
from pipeline.cli.output import JsonOption, console, emit, guarded, runtime
from pipeline.demo import run_demo
from pipeline.errors import OURS

__all__ = ["app", "main"]

app = typer.Typer(
    name="sealscribe",
    help="Privacy-preserving meeting transcription: audio sealed with a key you hold.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # a traceback could show locals holding content
)
app.add_typer(tenant.app, name="tenant")
app.add_typer(token.app, name="token")
app.add_typer(keys.app, name="keys")
app.add_typer(meeting.app, name="meeting")
app.add_typer(audit.app, name="audit")
app.add_typer(participant.app, name="participant")
app.add_typer(webhook.app, name="webhook")
app.add_typer(store.app, name="store")
app.command("worker")(work.worker)
app.command("transcribe")(work.transcribe)
app.command("scan")(work.scan)
app.command("serve")(serve.serve)
app.command("bots")(serve.bots)
meeting.app.command("transcript")(work.transcript)


@app.command("demo")
@guarded
def demo(
    seconds: float | None = typer.Option(
        None, "--seconds", min=2, help="Publish only this much of the meeting."
    ),
    serve: bool = typer.Option(
        False, "--serve", help="Keep the API and console running afterwards."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="With --serve: address."),
    port: int = typer.Option(8080, "--port", help="With --serve: port."),
    as_json: bool = JsonOption,
) -> None:
    """The embedded default: a four-person meeting over WebRTC, sealed, transcribed live."""
    from pipeline.config import get_settings
    from pipeline.processes import private_redis
    from pipeline.queue import use_broker

    def say(message: str) -> None:
        if not as_json:  # transcript text is shown as it is, never as Rich markup
            console.print(message, markup=False, highlight=False)

    with private_redis(get_settings().redis_url) as private:
        if private is not None:
            where = get_settings().redis_url.rpartition("@")[2]  # never a password
            say(
                f"(Redis is not reachable at {where}: started a private redis-server for this demo)"
            )
            os.environ["SEALSCRIBE_REDIS_URL"] = private
            get_settings.cache_clear()
            use_broker(get_settings().broker)  # the private Redis, unless a broker is named
        result = run_demo(
            runtime(), say, seconds, serve, host, port, interims=False if as_json else None
        )
    emit(as_json, result, lambda: None)
    if (
        not result.audit_intact
        or result.readable_after_delete
        or result.plaintext_found
        or result.audio_left
    ):
        raise typer.Exit(1)


def main() -> None:
    import logging

    from pipeline.config import get_settings
    from pipeline.logs import configure_logging

    try:
        log_dir = get_settings().log_dir
    except OURS:
        log_dir = None  # a configuration error is reported by the command itself
    # Commands log warnings and errors only (the worker sets its own level); every handler
    # redacts.
    configure_logging(log_dir, logging.WARNING, name="cli")
    app()
