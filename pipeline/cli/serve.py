"""``sealscribe serve`` (the HTTP API) and ``sealscribe bots`` (the bot service)."""

from __future__ import annotations

import asyncio
import signal

import typer

from pipeline.aio import run
from pipeline.cli.output import guarded, runtime


@guarded
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", min=1, max=65535),
) -> None:
    """Serve the HTTP API (and WHIP ingest)."""
    import uvicorn

    from pipeline.api.app import create_app

    # uvicorn's access log would record URLs (ids only) but its handlers are not ours:
    # keep it off and let our redacting handlers carry warnings and errors.
    uvicorn.run(
        create_app(runtime()),
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        server_header=False,
        # the client's address is the peer's unless the operator names the header a proxy
        # sets (SEALSCRIBE_CLIENT_ADDRESS_HEADER): uvicorn's own X-Forwarded-For handling
        # would trust any local client's header, and failed tries are counted by address
        proxy_headers=False,
    )


@guarded
def bots(
    max_bots: int = typer.Option(
        50, "--max", min=1, help="Most meetings this process runs bots in."
    ),
    metrics_port: int = typer.Option(
        0,
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve Prometheus metrics on this port (0: off).",
    ),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host"),
) -> None:
    """Run the bot service: takes join requests and keeps each bot in its meeting."""
    from pipeline.bot.service import BotService
    from pipeline.metrics import serve_metrics

    rt = runtime()
    if metrics_port:  # behind SEALSCRIBE_METRICS_TOKEN when it is set
        serve_metrics(metrics_port, metrics_host, token=rt.settings.metrics_token)

    service = BotService(rt, max_bots)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop)
        await service.run()

    run(main())
