"""Errors as RFC 9457 problem details: one mapping from our exception tree to HTTP.

Messages of our exceptions are written to be shown (they never hold content or key
material); anything else is reported by type only.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from keys.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    KeyRevoked,
    KeyUnavailable,
    NotFound,
    SealscribeError,
    StoreUnavailable,
)

__all__ = ["PROBLEM_TYPES", "problem", "problem_responses", "register"]

MEDIA_TYPE = "application/problem+json"

# (exception, status, type slug); the first match wins, so subclasses come first.
PROBLEM_TYPES: list[tuple[type[SealscribeError], int, str]] = [
    (InvalidInput, 400, "invalid-input"),
    (AuthenticationFailed, 401, "unauthenticated"),
    (NotFound, 404, "not-found"),
    (Conflict, 409, "conflict"),
    (KeyRevoked, 403, "key-revoked"),
    (KeyUnavailable, 503, "key-unavailable"),
    (StoreUnavailable, 503, "store-unavailable"),
]


def problem(status: int, detail: str, slug: str | None = None,
            headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
    title = HTTPStatus(status).phrase
    body = {"type": f"https://sealscribe.dev/problems/{slug or title.lower().replace(' ', '-')}",
            "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _ours(request: Request, exc: Exception) -> JSONResponse:
    for kind, status, slug in PROBLEM_TYPES:
        if isinstance(exc, kind):
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return problem(status, str(exc) or slug.replace("-", " "), slug, headers)
    return problem(500, f"internal error ({type(exc).__name__})", "internal")


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")}
              for e in exc.errors()]  # no "input": it would echo the request body
    where = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
    return problem(422, f"the request is not valid: {where}", "validation", errors=errors)


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail), headers=exc.headers)


def register(app: Any) -> None:
    app.add_exception_handler(SealscribeError, _ours)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)




def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problem statuses a route can return."""
    schema = {"type": "object", "required": ["type", "title", "status", "detail"],
              "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                             "status": {"type": "integer"}, "detail": {"type": "string"}}}
    return {s: {"description": HTTPStatus(s).phrase,
                "content": {MEDIA_TYPE: {"schema": schema}}} for s in statuses}
