"""The real API (uvicorn + FastAPI) served inside a test's event loop on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from pipeline.api.app import create_app
from pipeline.net import free_port
from pipeline.runtime import Runtime

__all__ = ["serve_api"]


@asynccontextmanager
async def serve_api(rt: Runtime, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Yields the base URL while the API serves; WHIP sessions are closed on exit."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(rt), host=host, port=port, log_config=None, access_log=False, lifespan="on"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
