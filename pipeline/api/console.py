"""The web console: ``GET /`` serves the page, ``GET /console/{asset}`` its script and styles.

The console is static (vanilla JS, no build step) and talks to the ``/v1`` API like any other
client, with the tenant token the user types in, kept in ``sessionStorage``. It has no
server-side state and no routes of its own beyond these files. Every response carries a strict
Content-Security-Policy: only this origin's own script, styles and connections (including the
captions WebSocket), no inline script, no framing.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Path, Response

from pipeline.errors import NotFound

__all__ = ["CSP", "router"]

router = APIRouter(include_in_schema=False)

#: self only; ``connect-src 'self'`` also admits ws:/wss: to this origin (CSP level 3)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

#: the only files served: name -> media type (nothing else under the package is reachable)
_ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}


@cache
def _read(name: str) -> bytes:
    return (files("pipeline.api") / "console_static" / name).read_bytes()


def _asset(name: str) -> Response:
    media = _ASSETS.get(name)
    if media is None:
        raise NotFound(f"the console has no file {name!r}")
    return Response(_read(name), media_type=media, headers=_HEADERS)


@router.get("/", response_class=Response)
def page() -> Response:
    return _asset("index.html")


@router.get("/console/{name}", response_class=Response)
def asset(name: Annotated[str, Path(max_length=32)]) -> Response:
    return _asset(name)
